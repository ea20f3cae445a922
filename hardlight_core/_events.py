"""What a connection machine reports: small immutable events.

They are frozen ``msgspec.Struct``s rather than frozen dataclasses: as immutable,
and several times cheaper to create, which matters at one or two per message.
"""

from __future__ import annotations

import msgspec

from ._envelope import StateUpdate, Topic
from ._errors import HardLightError, RpcError, RpcHandlerError
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


class HandshakeRequested(msgspec.Struct, frozen=True):
    """Server: a valid ``hl/2`` upgrade request; call ``accept()`` or ``refuse()``."""

    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    origin: str | None
    compression_level: int


class CallReceived(msgspec.Struct, frozen=True):
    """Server: a call to run; ``internal`` is the archived ``RpcCall``."""

    call_id: int
    internal: bytes


class MessageIgnored(msgspec.Struct, frozen=True):
    """A message was dropped, as the reference drops it (text, undecodable, duplicate id)."""

    reason: str


class ConnectionClosed(msgspec.Struct, frozen=True):
    """The connection ended: close ``code``/``reason`` if there was a close frame;
    ``error`` when a protocol error (``ProtocolError``) or a peer that stopped reading
    (``PeerNotReading``) ended it."""

    code: int | None
    reason: str
    error: HardLightError | None = None


class Connected(msgspec.Struct, frozen=True):
    """Client: the server accepted; it compresses its messages at ``compression_level``."""

    compression_level: int
    headers: tuple[tuple[bytes, bytes], ...]


class HandshakeRefused(msgspec.Struct, frozen=True):
    """Client: the server answered the upgrade with ``status_code`` (not 101)."""

    status_code: int
    reason: str


class ResponseReceived(msgspec.Struct, frozen=True):
    """Client: the answer to call ``call_id``."""

    call_id: int
    output: Ok[bytes] | Err[RpcHandlerError]


class EventReceived(msgspec.Struct, frozen=True):
    """Client: an event on a topic this connection is subscribed to."""

    topic: Topic
    payload: bytes


class StateChanged(msgspec.Struct, frozen=True):
    """Client: fields of the connection state changed."""

    updates: list[StateUpdate]


class CallFailed(msgspec.Struct, frozen=True):
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
