"""The envelope against the reference's own bytes (messages.json and recorded traffic)."""

from __future__ import annotations

from typing import Any

import pytest

from hardlight_conformance._data import (
    envelope_from_json,
    iter_recorded_messages,
    load_json,
    vectors_dir,
)
from hardlight_core import (
    DecodeError,
    EncodeError,
    Err,
    NewEvent,
    Ok,
    RpcHandlerError,
    RPCRequest,
    RPCResponse,
    StateChange,
    StateUpdate,
    Topic,
    decode_client_message,
    decode_server_message,
    encode_client_message,
    encode_server_message,
    pack,
    unpack_client_message,
    unpack_server_message,
)

MESSAGES = load_json(vectors_dir() / "messages.json")["messages"]


def _id(case: dict[str, Any]) -> str:
    return f"{case['type']}: {case['note']}"


@pytest.mark.parametrize("case", MESSAGES, ids=_id)
def test_reference_message_vectors(case: dict[str, Any]) -> None:
    message = envelope_from_json(case["type"], case["value"])
    raw = bytes.fromhex(case["rkyv"])
    if case["type"] == "ClientMessage":
        assert isinstance(message, RPCRequest)
        assert encode_client_message(message) == raw
        assert decode_client_message(raw) == message
        unpack = unpack_client_message
    else:
        assert not isinstance(message, RPCRequest)
        assert encode_server_message(message) == raw
        assert decode_server_message(raw) == message
        unpack = unpack_server_message  # type: ignore[assignment]
    for level in (0, 1, 6, 9):
        assert unpack(bytes.fromhex(case[f"deflate_l{level}"])) == message
        assert unpack(pack(message, level)) == message


def _recorded() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        r for r in iter_recorded_messages() if r[2].get("decoded", {}).get("text") is not None
    ]


def test_every_recorded_message_decodes_and_reencodes_identically() -> None:
    recorded = _recorded()
    assert len(recorded) > 1000
    for session, direction, frame in recorded:
        raw = bytes.fromhex(frame["inflated_hex"])
        if direction == "c2s":
            msg = decode_client_message(raw)
            assert encode_client_message(msg) == raw, session
        else:
            smsg = decode_server_message(raw)
            assert encode_server_message(smsg) == raw, session


def test_recorded_garbage_is_a_decode_error() -> None:
    garbage = [
        r for r in iter_recorded_messages() if r[2].get("decoded", {}).get("text") is None
    ]
    assert garbage, "the misbehave sessions hold frames the reference could not decode"
    for _session, direction, frame in garbage:
        with pytest.raises(DecodeError):
            raw = bytes.fromhex(frame["inflated_hex"])
            if direction == "c2s":
                decode_client_message(raw)
            else:
                decode_server_message(raw)


@pytest.mark.parametrize(
    "message",
    [
        RPCResponse(7, Ok(b"\x01\x02\x03")),
        RPCResponse(255, Err(RpcHandlerError.HandlerPanicked)),
        NewEvent(Topic.from_str("chat-room"), b"payload!"),
        NewEvent(Topic.from_bytes(b"\x07"), b""),
        StateChange([StateUpdate(0, b"\x01\0\0\0"), StateUpdate(1, b""), StateUpdate(9, b"xyz")]),
        StateChange([]),
    ],
)
def test_server_round_trip(message: Any) -> None:
    assert decode_server_message(encode_server_message(message)) == message


def test_topic_equality_includes_the_string_flag() -> None:
    assert Topic.from_str("a") != Topic.from_bytes(b"a")
    assert Topic.from_str("a") == Topic(b"a", True)
    assert len({Topic.from_str("a"), Topic.from_bytes(b"a"), Topic(b"a", True)}) == 2


@pytest.mark.parametrize("bad_id", [-1, 256, "1", 1.0])
def test_ids_must_be_u8(bad_id: Any) -> None:
    with pytest.raises(EncodeError):
        encode_client_message(RPCRequest(bad_id, b""))
    with pytest.raises(EncodeError):
        encode_server_message(RPCResponse(bad_id, Ok(b"")))


def test_bad_output_is_an_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode_server_message(RPCResponse(1, "nope"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b"", "shorter"),
        (b"\0" * 11, "shorter"),
        (b"\0" * 13, "aligned"),
        (bytes.fromhex("01000000fcffffff00000000"), "tag"),
        (bytes.fromhex("0000000000000000ff000000"), "outside"),
    ],
)
def test_client_message_rejections(raw: bytes, what: str) -> None:
    with pytest.raises(DecodeError, match=what):
        decode_client_message(raw)


def test_server_message_rejections() -> None:
    ok = bytearray(encode_server_message(RPCResponse(1, Ok(b"abcd"))))
    bad_result = bytearray(ok)
    bad_result[-20] = 2
    with pytest.raises(DecodeError, match="Result"):
        decode_server_message(bytes(bad_result))
    err = bytearray(encode_server_message(RPCResponse(1, Err(RpcHandlerError.HandlerPanicked))))
    err[5] = 11
    with pytest.raises(DecodeError, match="RpcHandlerError"):
        decode_server_message(bytes(err))
    event = bytearray(encode_server_message(NewEvent(Topic.from_str("ab"), b"cd")))
    event[-12] = 2
    with pytest.raises(DecodeError, match="bool"):
        decode_server_message(bytes(event))
    # two vectors claiming the same bytes: rkyv's subtree claims refuse it
    shared = bytearray(encode_server_message(NewEvent(Topic.from_bytes(b"abcd"), b"")))
    shared[-4:] = (4).to_bytes(4, "little")  # payload len 4
    shared[-8:-4] = (0 - 20).to_bytes(4, "little", signed=True)  # payload -> pos 0
    with pytest.raises(DecodeError, match="free range"):
        decode_server_message(bytes(shared))
    change = bytearray(encode_server_message(StateChange([StateUpdate(1, b"x")])))
    change[-16:-12] = (100).to_bytes(4, "little")
    with pytest.raises(DecodeError, match="StateChange"):
        decode_server_message(bytes(change))
    with pytest.raises(DecodeError, match="tag"):
        decode_server_message(b"\x03" + b"\0" * 23)
