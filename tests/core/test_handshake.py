"""The HTTP upgrade: the reference's request, the server's rules, refusals that close."""

from __future__ import annotations

import pytest
from hl_pair import KEY, drain, open_pair

from hardlight_conformance._data import load_json, traffic_dir
from hardlight_core._connection import ClientConnection, ServerConnection
from hardlight_core._events import (
    CallReceived,
    Connected,
    ConnectionClosed,
    HandshakeRefused,
    HandshakeRequested,
)
from hardlight_core._handshake import accept_token, parse_compression_level
from hardlight_core._limits import Limits
from hardlight_core._state import ConnectionState


def _request(protocol: str | None = "hl/2", level: str | None = "6", extra: str = "") -> bytes:
    lines = [
        "GET / HTTP/1.1", "Host: localhost", "Connection: Upgrade", "Upgrade: websocket",
        "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: AQEBAQEBAQEBAQEBAQEBAQ==",
    ]
    if level is not None:
        lines.append(f"x-hl-compress: {level}")
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def test_client_request_is_the_reference_request() -> None:
    recorded = load_json(traffic_dir() / "counter_seed.decoded.json")["connections"][0]
    request = recorded["http_request"]
    host = dict(request["headers"])["Host"]
    key = __import__("base64").b64decode(dict(request["headers"])["Sec-WebSocket-Key"])
    client = ClientConnection(host, compression_level=6, random_bytes=lambda n: key)
    assert client.data_to_send().decode() == request["raw"]


@pytest.mark.parametrize(
    ("value", "level"),
    [(None, 6), (b"abc", 6), (b"10", 6), (b"-1", 6), (b"", 6), (b"256", 6), (b"+3", 3),
     (b"07", 7), (b" 5", 5), (b"0", 0), (b"9", 9)],
)
def test_compression_level_rules(value: bytes | None, level: int) -> None:
    assert parse_compression_level(value) == level


def test_accepting_answers_101_with_the_reference_headers() -> None:
    server = ServerConnection()
    server.receive_data(_request(level="+3"))
    event = server.next_event()
    assert isinstance(event, HandshakeRequested) and event.compression_level == 3
    server.accept()
    answer = server.data_to_send().decode()
    assert answer.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    for header in ("connection: Upgrade", "upgrade: websocket", "sec-websocket-protocol: hl/2",
                   "x-hl-compress: 3",
                   f"sec-websocket-accept: {accept_token(b'AQEBAQEBAQEBAQEBAQEBAQ==').decode()}"):
        assert header in answer


def test_browsers_may_ask_for_hl_dot_2_and_get_it_echoed() -> None:
    # a browser's WebSocket refuses "/" in a subprotocol: hl.2 is the same protocol
    server = ServerConnection()
    server.receive_data(_request(protocol="hl.2"))
    assert isinstance(server.next_event(), HandshakeRequested)
    server.accept()
    answer = server.data_to_send().decode()
    assert answer.startswith("HTTP/1.1 101") and "sec-websocket-protocol: hl.2\r\n" in answer


@pytest.mark.parametrize(
    "protocol", [None, "hl/1", "hl/3", "HL/2", "hl/2.0", "hl/1, hl/2", "hl.2, hl/2", "hl.3"]
)
def test_wrong_subprotocol_is_refused_with_400_and_closed(protocol: str | None) -> None:
    server = ServerConnection()
    # a call frame follows in the same chunk: it must never be served
    server.receive_data(_request(protocol=protocol) + b"\x82\x80\0\0\0\0")
    events = drain(server)
    assert not any(isinstance(e, CallReceived) for e in events)
    assert isinstance(events[-1], ConnectionClosed)
    answer = server.data_to_send()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"subprotocol" in answer
    assert server.state is ConnectionState.CLOSED


def test_plain_get_gets_400_and_close() -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert server.data_to_send().startswith(b"HTTP/1.1 400")
    assert server.state is ConnectionState.CLOSED


def test_oversized_request_head_is_refused() -> None:
    server = ServerConnection(Limits(max_handshake_size=1024))
    server.receive_data(_request(extra="X-Big: " + "a" * 4000 + "\r\n"))
    assert server.data_to_send().startswith(b"HTTP/1.1 4")
    assert server.state is ConnectionState.CLOSED


def test_frames_in_the_same_chunk_as_the_request_are_kept() -> None:
    client = ClientConnection("h", random_bytes=lambda n: KEY)
    request = client.data_to_send()
    server = ServerConnection()
    c, _s = open_pair()  # a frame made by a client that is already open
    c.start_call(b"\0" * 8)
    frame = c.data_to_send()
    server.receive_data(request + frame)
    assert isinstance(server.next_event(), HandshakeRequested)
    server.accept()
    assert isinstance(server.next_event(), CallReceived)


def test_client_checks_the_answer() -> None:
    client = ClientConnection("h", random_bytes=lambda n: KEY)
    client.data_to_send()
    client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\n"
                        b"upgrade: websocket\r\nsec-websocket-accept: wrong\r\n"
                        b"sec-websocket-protocol: hl/2\r\n\r\n")
    events = drain(client)
    assert isinstance(events[-1], ConnectionClosed) and events[-1].error is not None
    assert client.state is ConnectionState.ERROR

    client = ClientConnection("h", random_bytes=lambda n: KEY)
    client.data_to_send()
    client.receive_data(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
    events = drain(client)
    assert isinstance(events[0], HandshakeRefused) and events[0].status_code == 400


def test_client_accepts_the_right_answer() -> None:
    client = ClientConnection("h", compression_level=1, random_bytes=lambda n: KEY)
    server = ServerConnection()
    server.receive_data(client.data_to_send())
    drain(server)
    server.accept()
    client.receive_data(server.data_to_send())
    (connected,) = drain(client)
    assert isinstance(connected, Connected) and connected.compression_level == 1
    assert client.state is ConnectionState.OPEN and server.state is ConnectionState.OPEN
    assert server.compression_level == 1
