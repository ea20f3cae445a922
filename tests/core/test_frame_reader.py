"""The frame reader against frames built by wsproto (an independent implementation)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol

from hardlight_core import MessageTooLarge, RemoteProtocolError
from hardlight_core._framing import FrameReader, Opcode, frame_bytes, mask_payload

messages = st.lists(st.binary(max_size=300), min_size=1, max_size=8)


@given(messages, st.data())
@settings(max_examples=150)
def test_reads_what_wsproto_writes_at_any_split(payloads: list[bytes], data: st.DataObject) -> None:
    client = FrameProtocol(client=True, extensions=[])
    wire = b""
    for p in payloads:
        if len(p) > 4 and data.draw(st.booleans()):
            cut = data.draw(st.integers(1, len(p) - 1))
            wire += client.send_data(p[:cut], fin=False) + client.send_data(p[cut:], fin=True)
        else:
            wire += client.send_data(p, fin=True)
    wire += client.ping(b"x")
    reader = FrameReader(expect_masked=True, max_message_size=1 << 20)
    got = []
    at = 0
    while at < len(wire):
        step = data.draw(st.integers(1, 64))
        got.extend(reader.feed(wire[at : at + step]))
        at += step
    assert [f.payload for f in got if f.opcode is Opcode.BINARY] == payloads
    assert got[-1].opcode is Opcode.PING
    assert reader.buffered == 0


@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4))
def test_masking_is_its_own_inverse(payload: bytes, key: bytes) -> None:
    assert mask_payload(mask_payload(payload, key), key) == payload
    assert mask_payload(payload, key) == bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@given(st.binary(max_size=70000))
@settings(max_examples=30)
def test_wsproto_reads_what_we_write(payload: bytes) -> None:
    server = FrameProtocol(client=False, extensions=[])
    server.receive_bytes(frame_bytes(Opcode.BINARY, payload, mask=True))
    frames = list(server.received_frames())
    assert b"".join(bytes(f.payload) for f in frames) == payload


def test_oversized_header_is_refused_before_the_payload() -> None:
    reader = FrameReader(expect_masked=False, max_message_size=1000)
    with pytest.raises(MessageTooLarge):
        reader.feed(bytes([0x82, 127]) + (2**62).to_bytes(8, "big"))


def test_fragments_count_towards_the_limit() -> None:
    reader = FrameReader(expect_masked=False, max_message_size=100)
    reader.feed(bytes([0x02, 60]) + b"a" * 60)
    with pytest.raises(MessageTooLarge):
        reader.feed(bytes([0x80, 60]) + b"a" * 60)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (bytes([0x82, 0x01]) + b"x", 1002),  # unmasked client frame
        (bytes([0xC2, 0x81, 0, 0, 0, 0]) + b"x", 1002),  # RSV1
        (bytes([0x83, 0x80, 0, 0, 0, 0]), 1002),  # opcode 3
        (bytes([0x09, 0x80, 0, 0, 0, 0]), 1002),  # fragmented ping
        (bytes([0x80, 0x80, 0, 0, 0, 0]), 1002),  # continuation without a message
        (bytes([0x81, 0x82, 0, 0, 0, 0]) + b"\xff\xfe", 1007),  # bad UTF-8 text
        (bytes([0x88, 0x82, 0, 0, 0, 0]) + (999).to_bytes(2, "big"), 1002),  # bad close code
    ],
)
def test_violations_carry_their_close_code(frame: bytes, code: int) -> None:
    reader = FrameReader(expect_masked=True, max_message_size=1000)
    with pytest.raises(RemoteProtocolError) as info:
        reader.feed(frame)
    assert info.value.close_code == code
