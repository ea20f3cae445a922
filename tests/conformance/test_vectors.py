"""The packaged rkyv vectors: every case, plus one test per layout rule of RKYV.md."""

from __future__ import annotations

import enum
import json
from typing import Any

import msgspec
import pytest

from hardlight_conformance._vectors import (
    check_vector_files,
    from_json,
    type_from_notation,
    values_equal,
    vectors_dir,
)
from hardlight_core._codec import decode, encode
from hardlight_core._errors import DecodeError
from hardlight_core._types import Result, Variant, u8, u32, usize

VECTORS = vectors_dir()
CASE_FILES = sorted(VECTORS.glob("rkyv-*.json"))


def _by_name() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in CASE_FILES:
        for c in json.loads(f.read_text()):
            out[c["name"]] = c
    return out


CASES = _by_name()


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.name)
def test_vector_file(path: Any) -> None:
    passed, failed, lines = check_vector_files([path])
    assert failed == 0, "\n".join(lines[:20])
    assert passed > 0


def _check(name: str) -> None:
    c = CASES[name]
    tp = type_from_notation(c["type"])
    value = from_json(tp, c["value"])
    assert encode(value, tp).hex() == c["hex"]
    assert values_equal(decode(bytes.fromhex(c["hex"]), tp), value)


@pytest.mark.parametrize(
    "name",
    [
        "string_len_7", "string_len_8",  # inline up to 7 bytes, then out of line
        "vec_u16_empty", "bytes_len_0",  # empty vectors still carry an offset
        "struct_awk", "struct_flags", "struct_small", "struct_nested",  # rustc field order
        "tuple_str_bool", "tuple_u8_u64",  # tuples: all but the last field reordered
        "enum_e255_v254", "enum_e256_v255", "enum_e300_v299",  # u8 vs u16 tags
        "enum_pad_a", "enum_pad_b",  # variants are repr(C) after the tag
        "opt_string_short", "result_ok_u32",  # u8-tagged Option/Result
        "map_empty", "map_one", "map_three",  # hash index + SeaHash
        "box_u64", "array_u32_2", "char_emoji", "f32_ninf",
    ],
)
def test_layout_rule(name: str) -> None:
    _check(name)


def test_validation_rejects_are_decode_errors() -> None:
    rejects = [c for c in CASES.values() if c.get("expect") == "reject"]
    assert rejects
    for c in rejects:
        with pytest.raises(DecodeError):
            decode(bytes.fromhex(c["hex"]), type_from_notation(c["type"]))


# ---------------------------------------------------------------- messages.json / apps.json
# Declared here from the reference's wire types (the files name types, not structure).


class RpcHandlerError(enum.Enum):
    ClientNotConnected = 0
    TooManyCallsInFlight = 1
    ClientEncodeError = 2
    ClientDecodeError = 3
    ServerEncodeError = 4
    ServerDecodeError = 5
    ClientCompressError = 6
    ClientDecompressError = 7
    ServerCompressError = 8
    ServerDecompressError = 9
    HandlerPanicked = 10


class Topic(msgspec.Struct):
    inner: bytes
    is_string: bool


class StateUpdate(msgspec.Struct):
    index: usize
    data: bytes


class RPCRequest(Variant):
    id: u8
    internal: bytes


class RPCResponse(Variant):
    id: u8
    output: Result[bytes, RpcHandlerError]


class NewEvent(Variant):
    topic: Topic
    payload: bytes


class StateChange(Variant):
    updates: list[StateUpdate]


MESSAGE_TYPES: dict[str, Any] = {
    "ClientMessage": RPCRequest,
    "ServerMessage": RPCResponse | NewEvent | StateChange,
    "RpcHandlerError": RpcHandlerError,
    "Topic": Topic,
    "StateUpdate": StateUpdate,
    "Result<Vec<u8>,RpcHandlerError>": Result[bytes, RpcHandlerError],
}


class NewCounter(Variant):
    pass


class Increment(Variant):
    amount: u32


class Decrement(Variant):
    amount: u32


class Get(Variant):
    pass


class Incremented(Variant):
    to: u32
    from_: u32


class Decremented(Variant):
    to: u32
    from_: u32


class ServerSentTest(Variant):
    pass


APP_TYPES: dict[str, Any] = {
    "counter::RpcCall": NewCounter | Increment | Decrement | Get,
    "counter::CounterEvent": Incremented | Decremented | ServerSentTest,
    "()": None,
    "u32": u32,
    "Option<String>": str | None,
}


def test_messages_json() -> None:
    passed, failed, lines = check_vector_files([VECTORS / "messages.json"], MESSAGE_TYPES)
    assert failed == 0, "\n".join(lines[:20])
    assert passed >= 40


def test_apps_json_counter() -> None:
    # Only the counter app's types are declared here; pet/todo cases are skipped.
    passed, failed, lines = check_vector_files([VECTORS / "apps.json"], APP_TYPES)
    assert failed == 0, "\n".join(lines[:20])
    assert passed >= 20
