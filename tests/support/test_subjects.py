"""Topic <-> subject mapping for the event bus: safe for any bytes, kinds kept apart."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardlight_core import Topic
from hardlight_support import subject_topic, topic_subject


@given(st.binary(max_size=64), st.booleans())
def test_round_trip_and_safe_tokens(inner: bytes, is_string: bool) -> None:
    topic = Topic(inner, is_string)
    subject = topic_subject(topic)
    assert subject_topic(subject) == topic
    tokens = subject.split(".")
    assert len(tokens) == 3 and all(t and not set(t) & set("*> \\t") for t in tokens)


def test_string_and_bytes_topics_get_distinct_subjects() -> None:
    assert topic_subject(Topic.from_str("a")) != topic_subject(Topic.from_bytes(b"a"))


def test_foreign_subjects_are_refused() -> None:
    with pytest.raises(ValueError):
        subject_topic("other.s.61")
