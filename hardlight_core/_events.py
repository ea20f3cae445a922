"""What a connection machine reports: small immutable events."""

from __future__ import annotations

from dataclasses import dataclass

from ._envelope import StateUpdate, Topic
from ._errors import ProtocolError, RpcError, RpcHandlerError
from ._types import Err, Ok

__all__ = [
    "CallFailed",
    "CallReceived",
    "Connected",
    "ConnectionClosed",
    "Event",
    "EventReceived",
    "HandshakeRefused",
    "HandshakeRequested",
    "MessageIgnored",
    "ResponseReceived",
    "StateChanged",
]


@dataclass(frozen=True, slots=True)
class HandshakeRequested:
    """Server: a valid ``hl/2`` upgrade request; call ``accept()`` or ``refuse()``."""

    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    origin: str | None
    compression_level: int


@dataclass(frozen=True, slots=True)
class CallReceived:
    """Server: a call to run; ``internal`` is the archived ``RpcCall``."""

    call_id: int
    internal: bytes


@dataclass(frozen=True, slots=True)
class MessageIgnored:
    """A message was dropped, as the reference drops it (text, undecodable, duplicate id)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection ended: close ``code``/``reason`` if there was a close frame;
    ``error`` when a protocol error or a lost socket ended it."""

    code: int | None
    reason: str
    error: ProtocolError | None = None


@dataclass(frozen=True, slots=True)
class Connected:
    """Client: the server accepted; it compresses its messages at ``compression_level``."""

    compression_level: int
    headers: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class HandshakeRefused:
    """Client: the server answered the upgrade with ``status_code`` (not 101)."""

    status_code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """Client: the answer to call ``call_id``."""

    call_id: int
    output: Ok[bytes] | Err[RpcHandlerError]


@dataclass(frozen=True, slots=True)
class EventReceived:
    """Client: an event on a topic this connection is subscribed to."""

    topic: Topic
    payload: bytes


@dataclass(frozen=True, slots=True)
class StateChanged:
    """Client: fields of the connection state changed."""

    updates: list[StateUpdate]


@dataclass(frozen=True, slots=True)
class CallFailed:
    """Client: call ``call_id`` will never be answered (the connection ended)."""

    call_id: int
    error: RpcError


Event = (
    HandshakeRequested
    | CallReceived
    | MessageIgnored
    | ConnectionClosed
    | Connected
    | HandshakeRefused
    | ResponseReceived
    | EventReceived
    | StateChanged
    | CallFailed
)
