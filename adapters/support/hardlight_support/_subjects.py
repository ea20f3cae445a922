"""Events across several servers: topic <-> subject mapping and the bus message format.

A node subscribes to a topic's subject while at least one of its connections is
subscribed to the topic (the event switch's Created/Removed), publishes every
event emitted on it, and delivers what it receives from other nodes locally. It
delivers its own events locally at once and ignores its own publications when they
come back, so every subscribed connection gets each emit exactly once, and local
delivery keeps working while the broker is unreachable.
"""

from __future__ import annotations

import os

from hardlight_core import HardLightError, Topic

__all__ = [
    "BusUnavailable",
    "ORIGIN_HEADER",
    "new_node_id",
    "subject_topic",
    "topic_subject",
]

ORIGIN_HEADER = "Hl-Origin"


class BusUnavailable(HardLightError):
    """The event bus (the NATS server) could not be reached."""


def new_node_id() -> str:
    """A random id for this node (marks the events it publishes)."""
    return os.urandom(8).hex()


def topic_subject(topic: Topic, prefix: str = "hl") -> str:
    """A NATS subject for ``topic``: any bytes, string and byte topics kept apart.

    ``"a"`` and ``b"a"`` map to ``hl.s.61`` and ``hl.b.61``; the empty topic to ``hl.b._``.
    """
    kind = "s" if topic.is_string else "b"
    return f"{prefix}.{kind}.{topic.inner.hex() or '_'}"


def subject_topic(subject: str, prefix: str = "hl") -> Topic:
    """The topic a subject made by :func:`topic_subject` stands for (ValueError if none)."""
    head, kind, body = subject.rsplit(".", 2) if subject.count(".") >= 2 else ("", "", "")
    if head != prefix or kind not in ("s", "b"):
        raise ValueError(f"not a HardLight topic subject: {subject!r}")
    inner = b"" if body == "_" else bytes.fromhex(body)
    return Topic(inner, kind == "s")
