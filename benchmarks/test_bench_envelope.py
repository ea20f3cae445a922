"""Envelope encode+decode (rkyv, no deflate) beside msgspec msgpack for equivalent Structs.

Run: python -m pytest benchmarks --benchmark-enable
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hardlight_core import (
    NewEvent,
    Ok,
    RPCRequest,
    RPCResponse,
    StateChange,
    StateUpdate,
    Topic,
    decode_client_message,
    decode_server_message,
    encode_client_message,
    encode_server_message,
)


class MRequest(msgspec.Struct, array_like=True):
    id: int
    internal: bytes


class MResponse(msgspec.Struct, array_like=True):
    id: int
    ok: bytes


class MTopic(msgspec.Struct, array_like=True):
    inner: bytes
    is_string: bool


class MEvent(msgspec.Struct, array_like=True):
    topic: MTopic
    payload: bytes


class MUpdate(msgspec.Struct, array_like=True):
    index: int
    data: bytes


class MChange(msgspec.Struct, array_like=True):
    updates: list[MUpdate]


CASES: dict[str, tuple[Any, Any, Any, Any]] = {
    "request": (
        RPCRequest(7, b"\x01\0\0\0\x0a\0\0\0"),
        encode_client_message,
        decode_client_message,
        MRequest(7, b"\x01\0\0\0\x0a\0\0\0"),
    ),
    "response": (
        RPCResponse(7, Ok(b"\x07\0\0\0")),
        encode_server_message,
        decode_server_message,
        MResponse(7, b"\x07\0\0\0"),
    ),
    "event": (
        NewEvent(Topic.from_bytes(b"\x5c"), b"\0" * 12),
        encode_server_message,
        decode_server_message,
        MEvent(MTopic(b"\x5c", False), b"\0" * 12),
    ),
    "state_change": (
        StateChange([StateUpdate(0, b"\x01\0\0\0"), StateUpdate(1, b"\x5c\0\0\0" * 4)]),
        encode_server_message,
        decode_server_message,
        MChange([MUpdate(0, b"\x01\0\0\0"), MUpdate(1, b"\x5c\0\0\0" * 4)]),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_envelope_rkyv_roundtrip(benchmark: Any, case: str) -> None:
    message, encode, decode, _ = CASES[case]
    assert benchmark(lambda: decode(encode(message))) == message


@pytest.mark.parametrize("case", list(CASES))
def test_envelope_msgspec_roundtrip(benchmark: Any, case: str) -> None:
    _, _, _, equivalent = CASES[case]
    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(type(equivalent))
    assert benchmark(lambda: decoder.decode(encoder.encode(equivalent))) == equivalent
