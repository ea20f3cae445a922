"""Connection machines: framing rules, limits, timers, close handshake (bytes only)."""

from __future__ import annotations

import zlib

import pytest
from hl_pair import drain, open_pair

from hardlight_core import (
    LocalProtocolError,
    MessageTooLarge,
    NewEvent,
    Ok,
    RemoteProtocolError,
    StateUpdate,
    Topic,
    pack,
)
from hardlight_core._events import (
    CallReceived,
    ConnectionClosed,
    EventReceived,
    MessageIgnored,
    ResponseReceived,
    StateChanged,
)
from hardlight_core._framing import Opcode, frame_bytes
from hardlight_core._limits import Limits
from hardlight_core._state import ConnectionState


def _client_frame(payload: bytes, opcode: int = Opcode.BINARY) -> bytes:
    return frame_bytes(opcode, payload, mask=True)


def test_messages_flow_both_ways() -> None:
    client, server = open_pair()
    call = client.start_call(b"\x03\0\0\0\0\0\0\0")
    server.receive_data(client.data_to_send())
    assert drain(server) == [CallReceived(call, b"\x03\0\0\0\0\0\0\0")]
    server.send_state_change([StateUpdate(0, b"\x07\0\0\0")])
    server.send_response(call, Ok(b"\x07\0\0\0"))
    server.send_event(Topic.from_str("t"), b"e")
    client.receive_data(server.data_to_send())
    events = drain(client)
    assert [type(e) for e in events] == [StateChanged, ResponseReceived, EventReceived]


def test_ping_is_answered_and_text_ignored() -> None:
    _client, server = open_pair()
    server.receive_data(_client_frame(b"hello", Opcode.PING) + _client_frame(b"hi", Opcode.TEXT))
    assert server.data_to_send() == frame_bytes(Opcode.PONG, b"hello", mask=False)
    assert [type(e) for e in drain(server)] == [MessageIgnored]
    assert server.ignored_messages == 1


def test_undecodable_messages_are_ignored_and_the_connection_serves_on() -> None:
    client, server = open_pair()
    junk = [b"", b"garbage", zlib.compress(b"\0" * 12), pack(NewEvent(Topic(), b""), 6) * 2]
    for payload in junk:
        server.receive_data(_client_frame(payload))
    assert server.ignored_messages == len(junk)
    client.start_call(b"")
    server.receive_data(client.data_to_send())
    assert isinstance(drain(server)[-1], CallReceived)
    assert server.state is ConnectionState.OPEN


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (frame_bytes(Opcode.BINARY, b"x", mask=False), 1002),
        (bytes([0xC2, 0x80, 0, 0, 0, 0]), 1002),
        (bytes([0x83, 0x80, 0, 0, 0, 0]), 1002),
        (frame_bytes(Opcode.TEXT, b"\xff", mask=True), 1007),
    ],
    ids=["unmasked", "rsv1", "opcode3", "bad_utf8"],
)
def test_protocol_errors_close_with_the_rfc_code(raw: bytes, code: int) -> None:
    _client, server = open_pair()
    server.receive_data(raw)
    closed = drain(server)[-1]
    assert isinstance(closed, ConnectionClosed) and isinstance(closed.error, RemoteProtocolError)
    assert closed.code == code
    out = server.data_to_send()
    assert out[0] == 0x88 and int.from_bytes(out[2:4], "big") == code
    assert server.state is ConnectionState.ERROR
    with pytest.raises(LocalProtocolError):
        server.send_response(0, Ok(b""))


def test_oversized_frame_header_closes_before_the_payload() -> None:
    _client, server = open_pair(limits=Limits(max_message_size=1000))
    server.receive_data(bytes([0x82, 0xFF]) + (10**12).to_bytes(8, "big") + b"mask")
    closed = drain(server)[-1]
    assert isinstance(closed, ConnectionClosed) and closed.code == 1009
    assert isinstance(closed.error, MessageTooLarge)


def test_deflate_bomb_closes_with_1009() -> None:
    _client, server = open_pair(limits=Limits(max_inflated_size=1 << 16))
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = bomb.compress(b"\0" * (1 << 22)) + bomb.flush()
    server.receive_data(_client_frame(payload))
    closed = drain(server)[-1]
    assert isinstance(closed, ConnectionClosed) and closed.code == 1009
    assert isinstance(closed.error, MessageTooLarge)
    assert server.state is ConnectionState.ERROR


def test_fragmented_messages_are_reassembled() -> None:
    client, server = open_pair()
    client.start_call(b"\x01\0\0\0\x05\0\0\0")
    frame = client.data_to_send()
    from hardlight_core._framing import FrameReader

    payload = FrameReader(expect_masked=True, max_message_size=1 << 20).feed(frame)[0].payload
    first = bytes([0x02, 0x80 | 3]) + b"\0\0\0\0" + payload[:3]
    rest = bytes([0x80, 0x80 | (len(payload) - 3)]) + b"\0\0\0\0" + payload[3:]
    server.receive_data(first + rest)
    assert isinstance(drain(server)[-1], CallReceived)


def test_close_frame_is_echoed_then_closed() -> None:
    _client, server = open_pair()
    server.receive_data(_client_frame(b"\x03\xe8bye", Opcode.CLOSE))
    assert drain(server) == [ConnectionClosed(1000, "bye", None)]
    assert server.data_to_send() == frame_bytes(Opcode.CLOSE, b"\x03\xe8bye", mask=False)
    assert server.state is ConnectionState.CLOSED


def test_eof_without_close_is_1006() -> None:
    _client, server = open_pair()
    server.receive_data(b"")
    assert drain(server) == [ConnectionClosed(1006, "connection lost (EOF without a close frame)")]


def test_timers_handshake_idle_and_close() -> None:
    from hardlight_core._connection import ServerConnection

    waiting = ServerConnection(now=0.0)
    assert waiting.get_timer() == 10.0
    waiting.handle_timer(10.5)
    assert waiting.state is ConnectionState.ERROR

    _client, server = open_pair(limits=Limits(idle_timeout=5.0, close_timeout=2.0))
    deadline = server.get_timer()
    assert deadline == 5.0
    server.handle_timer(5.0)
    assert server.data_to_send()[0] == 0x89  # a ping
    server.handle_timer(10.0)  # no pong: the peer is gone
    assert server.state is ConnectionState.ERROR

    _client, server = open_pair(limits=Limits(close_timeout=2.0))
    server.close()
    server.data_to_send()
    server.handle_timer(100.0)
    assert server.state is ConnectionState.CLOSED


def test_outgoing_cap_closes_with_1008_and_never_drops_a_response_silently() -> None:
    client, server = open_pair(limits=Limits(max_outgoing_bytes=2000))
    call = client.start_call(b"")
    server.receive_data(client.data_to_send())
    drain(server)
    with pytest.raises(LocalProtocolError):
        for _ in range(1000):
            server.send_event(Topic.from_str("t"), bytes(range(256)))
    closed = drain(server)[-1]
    assert isinstance(closed, ConnectionClosed) and closed.code == 1008
    with pytest.raises(LocalProtocolError):
        server.send_response(call, Ok(b""))  # refused loudly, not dropped


def test_an_answer_and_a_close_in_one_read_deliver_the_answer_first() -> None:
    # a graceful stop answers the last call and closes with 1001 in one write: the
    # client must see the answer, then the close (an anyio server showed the bug)
    from hardlight_core._events import ResponseReceived

    client, server = open_pair()
    call_id = client.start_call(b"\x00\x00\x00\x00")
    server.receive_data(client.data_to_send(), 0.0)
    drain(server)
    server.send_response(call_id, Ok(b""))
    server.close(1001, "server shutting down")
    client.receive_data(server.data_to_send(), 0.0)
    events = drain(client)
    assert [type(e).__name__ for e in events] == ["ResponseReceived", "ConnectionClosed"]
    assert isinstance(events[0], ResponseReceived) and events[0].call_id == call_id
    assert events[1].code == 1001
