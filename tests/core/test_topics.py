"""The event switch: Created/Removed balanced, closing connections leave nothing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hardlight_core import Topic
from hardlight_core._topics import EventSwitch, TopicCreated, TopicRemoved


def test_created_and_removed() -> None:
    switch: EventSwitch[str] = EventSwitch()
    t = Topic.from_str("a")
    assert switch.subscribe("c1", t) == TopicCreated(t)
    assert switch.subscribe("c2", t) is None
    assert set(switch.subscribers(t)) == {"c1", "c2"}
    assert switch.unsubscribe("c1", t) is None
    assert switch.unsubscribe("c2", t) == TopicRemoved(t)
    assert switch.unsubscribe("c2", t) is None


def test_string_and_bytes_topics_differ() -> None:
    switch: EventSwitch[str] = EventSwitch()
    assert switch.subscribe("c", Topic.from_str("a")) is not None
    assert switch.subscribe("c", Topic.from_bytes(b"a")) is not None
    assert len(switch) == 2


ops = st.lists(
    st.tuples(st.sampled_from(["sub", "unsub", "close"]), st.integers(0, 3), st.integers(0, 3)),
    max_size=60,
)


@given(ops)
def test_created_and_removed_are_balanced(operations: list[tuple[str, int, int]]) -> None:
    switch: EventSwitch[int] = EventSwitch()
    live: dict[Topic, int] = {}
    for op, conn, n in operations:
        topic = Topic.from_bytes(bytes([n]))
        if op == "sub":
            changes = [switch.subscribe(conn, topic)]
        elif op == "unsub":
            changes = [switch.unsubscribe(conn, topic)]
        else:
            changes = list(switch.unsubscribe_all(conn))
        for change in changes:
            if isinstance(change, TopicCreated):
                assert change.topic not in live
                live[change.topic] = 1
            elif isinstance(change, TopicRemoved):
                assert live.pop(change.topic) == 1
        assert set(live) == switch.topics
    for conn in range(4):
        switch.unsubscribe_all(conn)
    assert not switch.topics


def test_buses_follow_the_interface() -> None:
    from hardlight_asyncio import NatsBus
    from hardlight_core._topics import EventBus, LocalBus

    def accepts(bus: EventBus) -> EventBus:
        return bus

    for bus in (LocalBus(), NatsBus("nats://127.0.0.1:1")):
        accepts(bus)
        assert callable(bus.topic_changed) and callable(bus.publish)
