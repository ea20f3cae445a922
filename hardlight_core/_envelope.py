"""HardLight's envelope: ``ClientMessage`` / ``ServerMessage`` and their wire form.

The types are declared with the codec's type hints (so the generic codec can
archive them too), but the hot path uses the hand-written archivers below:
the envelope has a fixed shape, and these are several times faster than the
generic codec. Tests check both produce the reference's bytes.

Archived layouts (rkyv 0.7, size_32; offsets inside the root object):

* ``ClientMessage`` (12 bytes): tag u8 @0, id u8 @1, internal Vec<u8> @4.
* ``ServerMessage`` (24 bytes, the largest variant):
  ``RPCResponse``: tag @0, id @1, Result tag @4, Ok Vec<u8> @8 / Err u8 @5;
  ``NewEvent``: tag @0, Topic @4 (inner Vec @4, is_string @12), payload Vec @16;
  ``StateChange``: tag @0, Vec<StateUpdate> @4, each update 12 bytes
  (``data`` Vec @0, ``index`` u32 @8: rustc reorders the struct).
"""

from __future__ import annotations

import struct
from typing import TypeAlias

import msgspec

from ._deflate import DEFAULT_MAX_INFLATED_SIZE, deflate, inflate
from ._errors import DecodeError, EncodeError, RpcHandlerError
from ._types import Err, Ok, Result, Variant, u8, usize

__all__ = [
    "ClientMessage",
    "NewEvent",
    "RPCRequest",
    "RPCResponse",
    "ServerMessage",
    "StateChange",
    "StateUpdate",
    "Topic",
    "TopicLike",
    "as_topic",
    "decode_client_message",
    "decode_server_message",
    "encode_client_message",
    "encode_server_message",
    "pack",
    "unpack_client_message",
    "unpack_server_message",
]


class Topic(msgspec.Struct, frozen=True):
    """A topic: bytes plus whether they were made from a string (both part of equality).

    Make one with ``Topic.from_str("room")`` or ``Topic.from_bytes(b"\\x01")``, or pass the
    str or bytes itself wherever a topic goes (:func:`as_topic` maps them the same way
    everywhere): ``"a"`` and ``b"a"`` are different topics.
    """

    inner: bytes = b""
    is_string: bool = False

    def __post_init__(self) -> None:
        if self.inner.__class__ is not bytes:
            if isinstance(self.inner, str):
                raise TypeError(
                    f"Topic({self.inner!r}): Topic() takes the topic's bytes; for a name use "
                    f"Topic.from_str({self.inner!r}) (or pass the str itself where a topic "
                    "goes), for raw bytes Topic.from_bytes(b'...')"
                )
            if not isinstance(self.inner, bytes):
                raise TypeError(
                    f"Topic.inner must be bytes, not {type(self.inner).__name__}: use "
                    "Topic.from_str(name) or Topic.from_bytes(data)"
                )
        if self.is_string.__class__ is not bool:
            raise TypeError(
                f"Topic.is_string must be a bool, not {type(self.is_string).__name__}"
            )

    @classmethod
    def from_str(cls, name: str) -> Topic:
        """The topic made from a string (Rust ``Topic::from("...")``)."""
        if not isinstance(name, str):
            raise TypeError(f"Topic.from_str takes a str, not {type(name).__name__}")
        return cls(name.encode(), True)

    @classmethod
    def from_bytes(cls, data: bytes) -> Topic:
        """The topic made from raw bytes (Rust ``Topic::from(vec![...])``)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"Topic.from_bytes takes bytes, not {type(data).__name__}")
        return cls(bytes(data), False)

    def matches(self, topic: TopicLike) -> bool:
        """Whether this is ``topic`` (a str, bytes or Topic, as :func:`as_topic` reads it):
        ``event.topic.matches("room")``."""
        return self == as_topic(topic)

    def __str__(self) -> str:
        if self.is_string:
            try:
                return repr(self.inner.decode())
            except UnicodeDecodeError:
                pass
        return f"0x{self.inner.hex()}"


TopicLike: TypeAlias = Topic | str | bytes
"""What may be passed where a topic goes: a :class:`Topic`, a str or bytes."""


def as_topic(topic: TopicLike) -> Topic:
    """The :class:`Topic` for ``topic``: a str is ``Topic.from_str``, bytes
    ``Topic.from_bytes``, a Topic itself; anything else raises TypeError at once."""
    cls = topic.__class__
    if cls is Topic:
        return topic  # type: ignore[return-value]
    if cls is str:
        return Topic(topic.encode(), True)  # type: ignore[union-attr]
    if cls is bytes:
        return Topic(topic, False)  # type: ignore[arg-type]
    if isinstance(topic, Topic):
        return topic
    if isinstance(topic, str):
        return Topic(str(topic).encode(), True)
    if isinstance(topic, bytes):
        return Topic(bytes(topic), False)
    raise TypeError(
        f"a topic is a str (Topic.from_str), bytes (Topic.from_bytes) or a Topic, "
        f"not {type(topic).__name__}: {topic!r}"
    )


class StateUpdate(msgspec.Struct, frozen=True):
    """One changed state field: its position in the state struct and its rkyv archive."""

    index: usize
    data: bytes


class RPCRequest(Variant, frozen=True):
    """A call: ``internal`` is the rkyv archive of the service's ``RpcCall`` value."""

    id: u8
    internal: bytes


class RPCResponse(Variant, frozen=True):
    """The answer to call ``id``: ``Ok(archived return value)`` or ``Err(RpcHandlerError)``."""

    id: u8
    output: Result[bytes, RpcHandlerError]


class NewEvent(Variant, frozen=True):
    """An event on a topic the connection is subscribed to; ``payload`` is an rkyv archive."""

    topic: Topic
    payload: bytes


class StateChange(Variant, frozen=True):
    """The connection-state fields that changed, in one message."""

    updates: list[StateUpdate]


ClientMessage: TypeAlias = RPCRequest
ServerMessage: TypeAlias = RPCResponse | NewEvent | StateChange

_HANDLER_ERRORS = tuple(RpcHandlerError)

_CLIENT_ROOT = struct.Struct("<BBxxiI")
_RESPONSE_OK = struct.Struct("<BBxxBxxxiI8x")
_RESPONSE_ERR = struct.Struct("<BBxxBB18x")
_NEW_EVENT = struct.Struct("<BxxxiI?xxxiI")
_STATE_CHANGE = struct.Struct("<BxxxiI12x")
_UPDATE = struct.Struct("<iII")
_NEW_EVENT_READ = struct.Struct("<BxxxiIBxxxiI")
_I32_U32 = struct.Struct("<iI")
_SERVER_ROOT_SIZE = 24
_CLIENT_ROOT_SIZE = 12
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")


def _check_u8(value: int, what: str) -> None:
    if type(value) is not int or not 0 <= value <= 255:
        raise EncodeError(f"{what} must be a u8 (0..=255), got {value!r}")


def encode_client_message(message: RPCRequest) -> bytes:
    """The rkyv archive of a ``ClientMessage`` (exactly as the reference writes it)."""
    internal = message.internal
    call_id = message.id
    if call_id.__class__ is not int or not 0 <= call_id <= 255:
        _check_u8(call_id, "RPCRequest.id")
    n = len(internal)
    pad = _PAD[n & 3]
    return internal + pad + _CLIENT_ROOT.pack(0, call_id, -(n + len(pad) + 4), n)


def encode_server_message(message: ServerMessage) -> bytes:
    """The rkyv archive of a ``ServerMessage`` (exactly as the reference writes it)."""
    if message.__class__ is RPCResponse:
        call_id = message.id
        if call_id.__class__ is not int or not 0 <= call_id <= 255:
            _check_u8(call_id, "RPCResponse.id")
        output = message.output
        if output.__class__ is Ok:
            data = output.value
            n = len(data)
            pad = _PAD[n & 3]
            return data + pad + _RESPONSE_OK.pack(0, call_id, 0, -(n + len(pad) + 8), n)
        if type(output) is Err and isinstance(output.error, RpcHandlerError):
            return _RESPONSE_ERR.pack(0, message.id, 1, output.error.value)
        raise EncodeError(
            f"RPCResponse.output must be Ok(bytes) or Err(RpcHandlerError): {output!r}"
        )
    if type(message) is NewEvent:
        inner = message.topic.inner
        payload = message.payload
        n1 = len(inner)
        n2 = len(payload)
        end = n1 + n2
        pad = _PAD[end & 3]
        root = end + len(pad)
        head = _NEW_EVENT.pack(1, -(root + 4), n1, message.topic.is_string, n1 - (root + 16), n2)
        return b"".join((inner, payload, pad, head))
    if type(message) is StateChange:
        updates = message.updates
        parts: list[bytes] = []
        positions: list[int] = []
        pos = 0
        for update in updates:
            positions.append(pos)
            parts.append(update.data)
            pos += len(update.data)
        pad = _PAD[pos & 3]
        parts.append(pad)
        array = pos + len(pad)
        at = array
        for update, data_pos in zip(updates, positions, strict=True):
            index = update.index
            if type(index) is not int or not 0 <= index <= 0xFFFFFFFF:
                raise EncodeError(f"StateUpdate.index must be a usize (u32), got {index!r}")
            parts.append(_UPDATE.pack(data_pos - at, len(update.data), index))
            at += 12
        parts.append(_STATE_CHANGE.pack(2, array - (at + 4), len(updates)))
        return b"".join(parts)
    raise EncodeError(f"not a ServerMessage: {message!r}")


def _out_of_range(what: str, length: int, target: int, start: int, limit: int, at: int) -> None:
    raise DecodeError(
        f"{what}: {length} bytes at {target} lie outside the free range "
        f"[{start}, {limit}) (pointer at {at})"
    )


def _root(data: bytes, size: int, what: str) -> int:
    root = len(data) - size
    if root < 0:
        raise DecodeError(f"{what}: {len(data)} bytes is shorter than its {size}-byte root")
    if root & 3:
        raise DecodeError(f"{what}: root at {root} is not 4-byte aligned")
    return root


def decode_client_message(data: bytes) -> RPCRequest:
    """Validate and read a ``ClientMessage`` archive (as ``rkyv::from_bytes`` would)."""
    root = len(data) - _CLIENT_ROOT_SIZE
    if root < 0 or root & 3:
        _root(data, _CLIENT_ROOT_SIZE, "ClientMessage")
    tag, call_id, offset, length = _CLIENT_ROOT.unpack_from(data, root)
    if tag:
        raise DecodeError(f"ClientMessage: unknown variant tag {tag} at {root}")
    target = root + 4 + offset
    if target < 0 or target + length > root:
        raise DecodeError(
            f"RPCRequest.internal: {length} bytes at {target} lie outside the free range "
            f"[0, {root}) (pointer at {root + 4})"
        )
    return RPCRequest(call_id, data[target : target + length])


def decode_server_message(data: bytes) -> ServerMessage:
    """Validate and read a ``ServerMessage`` archive (as ``rkyv::from_bytes`` would)."""
    root = len(data) - _SERVER_ROOT_SIZE
    if root < 0 or root & 3:
        _root(data, _SERVER_ROOT_SIZE, "ServerMessage")
    tag = data[root]
    if tag == 0:
        result_tag = data[root + 4]
        if result_tag == 0:
            offset, length = _I32_U32.unpack_from(data, root + 8)
            target = root + 8 + offset
            if target < 0 or target + length > root:
                raise DecodeError(
                    f"RPCResponse.output: {length} bytes at {target} lie outside the free "
                    f"range [0, {root}) (pointer at {root + 8})"
                )
            return RPCResponse(data[root + 1], Ok(data[target : target + length]))
        if result_tag == 1:
            code = data[root + 5]
            if code >= len(_HANDLER_ERRORS):
                raise DecodeError(f"RpcHandlerError: unknown variant tag {code} at {root + 5}")
            return RPCResponse(data[root + 1], Err(_HANDLER_ERRORS[code]))
        raise DecodeError(f"Result: invalid tag {result_tag} at {root + 4}")
    if tag == 1:
        _tag, inner_off, inner_len, flag, payload_off, payload_len = _NEW_EVENT_READ.unpack_from(
            data, root
        )
        if flag > 1:
            raise DecodeError(f"Topic.is_string: invalid bool byte {flag} at {root + 12}")
        inner_at = root + 4 + inner_off
        payload_at = root + 16 + payload_off
        # rkyv's claims: each out-of-line range lies before the root, in write order
        if inner_at < 0 or inner_at + inner_len > root:
            _out_of_range("Topic.inner", inner_len, inner_at, 0, root, root + 4)
        if payload_at < inner_at + inner_len or payload_at + payload_len > root:
            _out_of_range(
                "NewEvent.payload", payload_len, payload_at, inner_at + inner_len, root, root + 16
            )
        return NewEvent(
            Topic(data[inner_at : inner_at + inner_len], flag == 1),
            data[payload_at : payload_at + payload_len],
        )
    if tag == 2:
        offset, count = _I32_U32.unpack_from(data, root + 4)
        array = root + 4 + offset
        end = array + 12 * count
        if array < 0 or end > root:
            raise DecodeError(f"StateChange: {count} updates at {array} lie outside [0, {root})")
        if array & 3:
            raise DecodeError(f"StateChange: update array at {array} is not 4-byte aligned")
        updates = []
        start = 0
        at = array
        for data_off, length, index in _UPDATE.iter_unpack(data[array:end]):
            target = at + data_off
            if target < start or target + length > array:
                _out_of_range("StateUpdate.data", length, target, start, array, at)
            start = target + length
            updates.append(StateUpdate(index, data[target:start]))
            at += 12
        return StateChange(updates)
    raise DecodeError(f"ServerMessage: unknown variant tag {tag} at {root}")


def pack(message: RPCRequest | ServerMessage, level: int) -> bytes:
    """Archive a message and deflate it at ``level``: one WebSocket message's payload."""
    if isinstance(message, RPCRequest):
        return deflate(encode_client_message(message), level)
    return deflate(encode_server_message(message), level)


def unpack_client_message(data: bytes, max_size: int = DEFAULT_MAX_INFLATED_SIZE) -> RPCRequest:
    """Inflate (bounded by ``max_size``) and decode a client's message."""
    return decode_client_message(inflate(data, max_size))


def unpack_server_message(data: bytes, max_size: int = DEFAULT_MAX_INFLATED_SIZE) -> ServerMessage:
    """Inflate (bounded by ``max_size``) and decode a server's message."""
    return decode_server_message(inflate(data, max_size))
