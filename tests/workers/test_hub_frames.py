"""The worker hub's frames and routing (``hardlight_support._hub``), without I/O."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardlight_core import Topic
from hardlight_support._hub import (
    FrameDecoder,
    HubEvent,
    HubHello,
    HubInterest,
    HubProtocolError,
    HubRouter,
    encode_event,
    encode_hello,
    encode_interest,
)

origins = st.binary(min_size=8, max_size=8)
topics = st.one_of(
    st.binary(max_size=40).map(Topic.from_bytes),
    st.text(max_size=20).map(Topic.from_str),
)
frames = st.one_of(
    origins.map(HubHello),
    st.builds(HubInterest, topics, st.booleans()),
    st.builds(HubEvent, origins, topics, st.binary(max_size=300)),
)


def encode(frame: HubHello | HubInterest | HubEvent) -> bytes:
    if isinstance(frame, HubHello):
        return encode_hello(frame.origin)
    if isinstance(frame, HubInterest):
        return encode_interest(frame.topic, frame.subscribed)
    return encode_event(frame.origin, frame.topic, frame.payload)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=8), st.lists(st.integers(0, 2000), max_size=6))
def test_frames_round_trip_however_the_stream_is_split(
    sent: list[HubHello | HubInterest | HubEvent], cuts: list[int]
) -> None:
    stream = b"".join(map(encode, sent))
    decoder = FrameDecoder()
    got: list[HubHello | HubInterest | HubEvent] = []
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for start, end in itertools.pairwise(points):
        got += decoder.feed(stream[start:end])
    assert got == sent
    assert decoder.pending == 0
    for frame, original in zip(got, sent, strict=True):
        if isinstance(frame, HubEvent):
            assert frame.raw == encode(original)  # what the hub forwards, byte for byte


def test_string_and_byte_topics_stay_apart() -> None:
    a = FrameDecoder().feed(encode_interest(Topic.from_str("a"), True))
    b = FrameDecoder().feed(encode_interest(Topic.from_bytes(b"a"), True))
    assert a != b
    assert a == [HubInterest(Topic.from_str("a"), True)]


@pytest.mark.parametrize(
    "data, why",
    [
        (struct.pack("!I", 0), "length 0"),
        (struct.pack("!IB", 1, 9), "unknown kind"),
        (struct.pack("!IB", 2, 1) + b"\x01", "HELLO"),
        (struct.pack("!IB", 10, 1) + b"\x07" + b"x" * 8, "version"),
        (struct.pack("!IB", 2, 2) + b"\x05", "topic kind"),
        (struct.pack("!IB", 1, 3), "without a topic kind"),
        (struct.pack("!IB", 3, 2) + b"\x01\xff", "UTF-8"),
        (struct.pack("!IB", 5, 4) + b"1234", "shorter"),
        (struct.pack("!IB", 14, 4) + b"o" * 8 + b"\x00" + struct.pack("!I", 9), "longer"),
    ],
)
def test_bad_frames_are_protocol_errors(data: bytes, why: str) -> None:
    with pytest.raises(HubProtocolError, match=why):
        FrameDecoder().feed(data)


def test_a_frame_over_the_bound_is_refused_from_its_header() -> None:
    decoder = FrameDecoder(max_frame=100)
    with pytest.raises(HubProtocolError, match="length 101"):
        decoder.feed(struct.pack("!I", 101))  # before its body arrives


def test_router_forwards_to_other_interested_workers_only() -> None:
    router: HubRouter[str] = HubRouter()
    t, other = Topic.from_str("room"), Topic.from_str("elsewhere")
    for peer, origin in (("a", b"A" * 8), ("b", b"B" * 8), ("c", b"C" * 8), ("a2", b"A" * 8)):
        router.add(peer)
        assert router.receive(peer, HubHello(origin)) == []
    for peer in ("a", "b", "a2"):
        router.receive(peer, HubInterest(t, True))
    router.receive("c", HubInterest(other, True))
    event = HubEvent(b"A" * 8, t, b"x")
    # not back to its sender, nor to another client with the sender's origin
    assert router.receive("a", event) == ["b"]
    assert sorted(router.receive("b", HubEvent(b"B" * 8, t, b"y"))) == ["a", "a2"]
    router.receive("b", HubInterest(t, False))
    assert router.receive("a", event) == []
    router.remove("a2")
    assert router.subscribers(t) == frozenset({"a"})
    router.remove("a")
    assert router.subscribers(t) == frozenset()


def test_router_protocol_rules() -> None:
    router: HubRouter[str] = HubRouter()
    router.add("a")
    with pytest.raises(HubProtocolError, match="first frame must be HELLO"):
        router.receive("a", HubInterest(Topic.from_str("t"), True))
    router.receive("a", HubHello(b"A" * 8))
    with pytest.raises(HubProtocolError, match="second HELLO"):
        router.receive("a", HubHello(b"A" * 8))
    with pytest.raises(HubProtocolError, match="origin"):
        router.receive("a", HubEvent(b"Z" * 8, Topic.from_str("t"), b""))
    with pytest.raises(HubProtocolError, match="not connected"):
        router.receive("zz", HubHello(b"A" * 8))


def test_origin_ids_are_eight_bytes() -> None:
    with pytest.raises(ValueError, match="8 bytes"):
        encode_hello(b"short")
    with pytest.raises(ValueError, match="8 bytes"):
        encode_event(b"short", Topic.from_str("t"), b"")
