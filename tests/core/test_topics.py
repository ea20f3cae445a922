"""The event switch: Created/Removed balanced, closing connections leave nothing."""

from __future__ import annotations

import re

import pytest
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


# -- topics given as str or bytes ------------------------------------------------------------


def test_as_topic_maps_str_and_bytes_the_same_way_every_time() -> None:
    from hardlight_core import as_topic

    assert as_topic("room") == Topic.from_str("room") == Topic(b"room", True)
    assert as_topic(b"room") == Topic.from_bytes(b"room") == Topic(b"room", False)
    assert as_topic("room") != as_topic(b"room")
    topic = Topic.from_str("x")
    assert as_topic(topic) is topic
    assert as_topic("é") == Topic("é".encode(), True)
    for bad in (5, None, 1.5, ["room"], bytearray(b"room")):
        with pytest.raises(TypeError, match=r"a topic is a str .*, bytes .* or a Topic, not"):
            as_topic(bad)  # type: ignore[arg-type]


def test_a_wrongly_built_topic_raises_at_construction() -> None:
    with pytest.raises(TypeError, match=r"Topic\('shop'\): .*use Topic.from_str\('shop'\)"):
        Topic("shop")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("Topic.inner must be bytes, not bytearray")):
        Topic(bytearray(b"shop"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("Topic.is_string must be a bool, not int")):
        Topic(b"shop", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("Topic.from_str takes a str, not bytes")):
        Topic.from_str(b"shop")  # type: ignore[arg-type]
    assert Topic() == Topic(b"", False)
    assert Topic.from_str("a").matches("a") and not Topic.from_str("a").matches(b"a")


def test_handlers_emitters_and_the_engine_take_str_and_bytes_topics() -> None:
    from hl_pair import KEY

    from hardlight_apps.counter import Counter, CounterEvent, CounterHandler, Incremented
    from hardlight_core import EventDelivered, encode
    from hardlight_core._client_core import ClientCore
    from hardlight_core._server_core import ServerCore

    core = ServerCore(CounterHandler)
    changes: list[object] = []
    published: list[object] = []
    core.on_topic = changes.append
    core.on_emit = lambda topic, payload: published.append(topic)
    client = ClientCore(Counter, "localhost", random_bytes=lambda n: KEY)
    session = core.open_session()
    session.receive_data(client.data_to_send(), 0.0)
    client.receive_data(session.data_to_send(), 0.0)
    handler = session.handler

    handler.subscribe("room")
    assert changes == [TopicCreated(Topic.from_str("room"))]
    event = Incremented(to=2, from_=1)
    assert handler.emit("room", event) == 1
    assert handler.emit(b"room", event) == 0  # another topic
    assert core.emit("room", encode(event, CounterEvent)) == 1
    emitter = core.event_emitter(CounterEvent)
    assert emitter.emit_nowait("room", event) == 1
    assert published == [Topic.from_str("room"), Topic.from_bytes(b"room")] + [
        Topic.from_str("room")
    ] * 2  # the bus always gets a Topic
    received = [
        o for o in client.receive_data(session.data_to_send(), 0.0)
        if isinstance(o, EventDelivered)
    ]
    assert len(received) == 3
    assert all(o.topic.matches("room") and o.topic == Topic.from_str("room") for o in received)

    handler.subscribe(b"\x01")
    assert core.deliver(b"\x01", encode(event, CounterEvent)) == 1
    handler.unsubscribe("room")
    assert changes[-1] == TopicRemoved(Topic.from_str("room"))
    assert emitter.emit_nowait("room", event) == 0

    for bad in (5, None):
        with pytest.raises(TypeError, match="a topic is a str"):
            handler.subscribe(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="a topic is a str"):
            handler.emit(bad, event)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="a topic is a str"):
            emitter.emit_nowait(bad, event)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="a topic is a str"):
            core.emit(bad, b"")  # type: ignore[arg-type]
