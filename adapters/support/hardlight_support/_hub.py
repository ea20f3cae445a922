"""Events between the workers of one server: the hub's frame format and routing (sans-IO).

``run_workers`` starts a hub in the supervisor process (a Unix domain socket) and N worker
processes; each worker's bus (``hardlight_asyncio.WorkerBus``) is a client of the hub.
This module holds the decisions, without I/O; the hub and the bus only move bytes.

Frames, every integer big-endian::

    u32 length                      of what follows (kind and body), 1 .. max_frame
    u8  kind
    body:
      HELLO        u8 version (1), origin (8 bytes)                 first frame of a client
      SUBSCRIBE    u8 topic kind (0 bytes, 1 string), topic bytes   this worker gained its
      UNSUBSCRIBE  u8 topic kind, topic bytes                       first / lost its last
                                                                    subscriber of a topic
      EVENT        origin (8 bytes), u8 topic kind, u32 topic length, topic bytes, payload

The hub forwards an EVENT, byte for byte, to every other client that has SUBSCRIBEd to its
topic and never to the client it came from nor to one that said the same origin in its HELLO
(a worker delivers its own events locally at once). A worker also drops an EVENT carrying its
own origin. So every subscribed connection of every worker gets each emit exactly once.
Interest is per worker, as with NATS: the topic notifier of each worker reports
``TopicCreated`` / ``TopicRemoved`` for its own connections, which is what it SUBSCRIBEs with.
A frame that breaks these rules is a :class:`HubProtocolError`: the hub closes that client.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hardlight_core import Topic

__all__ = [
    "HUB_VERSION",
    "MAX_HUB_FRAME",
    "FrameDecoder",
    "HubEvent",
    "HubHello",
    "HubInterest",
    "HubProtocolError",
    "HubRouter",
    "encode_event",
    "encode_hello",
    "encode_interest",
]

HUB_VERSION = 1
#: default bound on one frame (an event's topic and payload: an event archive is bounded by
#: what one connection may inflate, 16 MiB by default)
MAX_HUB_FRAME = 32 * 1024 * 1024

HELLO, SUBSCRIBE, UNSUBSCRIBE, EVENT = 1, 2, 3, 4
ORIGIN_SIZE = 8

_HEAD = struct.Struct("!IB")
_U32 = struct.Struct("!I")


class HubProtocolError(ValueError):
    """A frame that is not what the hub protocol allows (the connection is closed)."""


@dataclass(frozen=True, slots=True)
class HubHello:
    """A client's first frame: the origin id it marks its events with."""

    origin: bytes
    version: int = HUB_VERSION


@dataclass(frozen=True, slots=True)
class HubInterest:
    """A worker gained its first (``subscribed``) or lost its last subscriber of ``topic``."""

    topic: Topic
    subscribed: bool


@dataclass(frozen=True, slots=True)
class HubEvent:
    """An event emitted on worker ``origin``; ``raw`` is the whole frame (what the hub forwards)."""

    origin: bytes
    topic: Topic
    payload: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)


HubFrame = HubHello | HubInterest | HubEvent


def _check_origin(origin: bytes) -> None:
    if len(origin) != ORIGIN_SIZE:
        raise ValueError(f"a hub origin id is {ORIGIN_SIZE} bytes, not {len(origin)}")


def _frame(kind: int, body: bytes) -> bytes:
    return _HEAD.pack(len(body) + 1, kind) + body


def encode_hello(origin: bytes) -> bytes:
    """The HELLO frame of a client whose events carry ``origin`` (8 bytes)."""
    _check_origin(origin)
    return _frame(HELLO, bytes((HUB_VERSION,)) + origin)


def encode_interest(topic: Topic, subscribed: bool) -> bytes:
    """A SUBSCRIBE (``subscribed``) or UNSUBSCRIBE frame for ``topic``."""
    return _frame(SUBSCRIBE if subscribed else UNSUBSCRIBE, bytes((topic.is_string,)) + topic.inner)


def encode_event(origin: bytes, topic: Topic, payload: bytes) -> bytes:
    """An EVENT frame: ``payload`` (an rkyv archive) emitted on ``topic`` by ``origin``."""
    _check_origin(origin)
    inner = topic.inner
    body_len = ORIGIN_SIZE + 1 + 4 + len(inner) + len(payload)
    return b"".join(
        (
            _HEAD.pack(body_len + 1, EVENT),
            origin,
            bytes((topic.is_string,)),
            _U32.pack(len(inner)),
            inner,
            payload,
        )
    )


def _topic(kind: int, inner: bytes) -> Topic:
    if kind not in (0, 1):
        raise HubProtocolError(f"hub frame: topic kind {kind} (0 bytes, 1 string)")
    if kind:
        try:
            inner.decode("utf-8")
        except UnicodeDecodeError:
            raise HubProtocolError("hub frame: a string topic that is not UTF-8") from None
    return Topic(inner, bool(kind))


def _decode(kind: int, body: bytes, raw: bytes) -> HubFrame:
    if kind == EVENT:
        if len(body) < ORIGIN_SIZE + 5:
            raise HubProtocolError("hub frame: EVENT shorter than its header")
        (topic_len,) = _U32.unpack_from(body, ORIGIN_SIZE + 1)
        start = ORIGIN_SIZE + 5
        if start + topic_len > len(body):
            raise HubProtocolError("hub frame: EVENT topic longer than the frame")
        topic = _topic(body[ORIGIN_SIZE], body[start : start + topic_len])
        return HubEvent(body[:ORIGIN_SIZE], topic, body[start + topic_len :], raw)
    if kind in (SUBSCRIBE, UNSUBSCRIBE):
        if not body:
            raise HubProtocolError("hub frame: SUBSCRIBE/UNSUBSCRIBE without a topic kind")
        return HubInterest(_topic(body[0], body[1:]), kind == SUBSCRIBE)
    if kind == HELLO:
        if len(body) != 1 + ORIGIN_SIZE:
            raise HubProtocolError("hub frame: HELLO is a version and an 8-byte origin")
        if body[0] != HUB_VERSION:
            raise HubProtocolError(f"hub frame: HELLO version {body[0]}, expected {HUB_VERSION}")
        return HubHello(body[1:], body[0])
    raise HubProtocolError(f"hub frame: unknown kind {kind}")


class FrameDecoder:
    """Bytes in, whole frames out (a stream may split or join frames anywhere)."""

    __slots__ = ("_buffer", "max_frame")

    def __init__(self, max_frame: int = MAX_HUB_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[HubFrame]:
        """Frames completed by ``data`` (HubProtocolError on a bad one: stop reading then)."""
        buffer = self._buffer
        buffer += data
        frames: list[HubFrame] = []
        pos = 0
        end = len(buffer)
        while end - pos >= 4:
            (length,) = _U32.unpack_from(buffer, pos)
            if not 1 <= length <= self.max_frame:
                raise HubProtocolError(f"hub frame: length {length} (1 .. {self.max_frame})")
            if end - pos - 4 < length:
                break
            raw = bytes(buffer[pos : pos + 4 + length])
            frames.append(_decode(raw[4], raw[5:], raw))
            pos += 4 + length
        if pos:
            del buffer[:pos]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held."""
        return len(self._buffer)


P = TypeVar("P", bound=Hashable)


class HubRouter(Generic[P]):
    """The hub's decisions: which clients get a frame (``P`` is whatever names a client)."""

    def __init__(self) -> None:
        self._origin: dict[P, bytes | None] = {}
        self._topics: dict[P, set[Topic]] = {}
        self._by_topic: dict[Topic, set[P]] = {}

    def add(self, peer: P) -> None:
        """A client connected (it must say HELLO first)."""
        self._origin[peer] = None
        self._topics[peer] = set()

    def remove(self, peer: P) -> None:
        """A client went away: forget its interest."""
        self._origin.pop(peer, None)
        for topic in self._topics.pop(peer, ()):
            peers = self._by_topic.get(topic)
            if peers is not None:
                peers.discard(peer)
                if not peers:
                    del self._by_topic[topic]

    @property
    def peers(self) -> Iterable[P]:
        """Clients connected."""
        return self._origin.keys()

    def subscribers(self, topic: Topic) -> frozenset[P]:
        """Clients interested in ``topic``."""
        return frozenset(self._by_topic.get(topic, ()))

    def receive(self, peer: P, frame: HubFrame) -> list[P]:
        """Take a frame from ``peer``: the clients to forward ``frame.raw`` to (events only)."""
        if peer not in self._origin:
            raise HubProtocolError("hub: a frame from a client that is not connected")
        origin = self._origin[peer]
        if isinstance(frame, HubHello):
            if origin is not None:
                raise HubProtocolError("hub: a second HELLO")
            self._origin[peer] = frame.origin
            return []
        if origin is None:
            raise HubProtocolError("hub: the first frame must be HELLO")
        if isinstance(frame, HubInterest):
            topics = self._topics[peer]
            if frame.subscribed:
                topics.add(frame.topic)
                self._by_topic.setdefault(frame.topic, set()).add(peer)
            elif frame.topic in topics:
                topics.discard(frame.topic)
                peers = self._by_topic[frame.topic]
                peers.discard(peer)
                if not peers:
                    del self._by_topic[frame.topic]
            return []
        if frame.origin != origin:
            raise HubProtocolError("hub: an EVENT whose origin is not the client's own")
        return [
            other
            for other in self._by_topic.get(frame.topic, ())
            if other != peer and self._origin.get(other) != origin
        ]
