"""The WebSocket transport alone: upgrade, frames, ping/pong, close, timers and the bound.

Bytes in, events out, no sockets; no HardLight message is decoded at this layer.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardlight_core import LocalProtocolError, PeerNotReading, RemoteProtocolError
from hardlight_core._events import (
    Connected,
    ConnectionClosed,
    HandshakeRefused,
    HandshakeRequested,
    MessageIgnored,
)
from hardlight_core._framing import FrameReader, Opcode, close_payload, frame_bytes
from hardlight_core._limits import Limits
from hardlight_core._state import ConnectionState
from hardlight_core._transport import ClientTransport, MessageReceived, ServerTransport

OPEN, CLOSING, CLOSED, ERROR = (
    ConnectionState.OPEN,
    ConnectionState.CLOSING,
    ConnectionState.CLOSED,
    ConnectionState.ERROR,
)


def _keys(n: int) -> bytes:
    return b"\x07" * n


def masked(opcode: int, payload: bytes = b"") -> bytes:
    """A frame as a client sends it."""
    return frame_bytes(opcode, payload, mask=True, random_bytes=_keys)


def plain(opcode: int, payload: bytes = b"") -> bytes:
    """A frame as a server sends it."""
    return frame_bytes(opcode, payload, mask=False)


def events(transport: Any) -> list[Any]:
    out = []
    while (event := transport.next_event()) is not None:
        out.append(event)
    return out


def client_frames(data: bytes) -> list[Any]:
    """What a server would read from ``data`` written by a client (unmasked)."""
    return FrameReader(expect_masked=True, max_message_size=1 << 20).feed(data)


def server_frames(data: bytes) -> list[Any]:
    return FrameReader(expect_masked=False, max_message_size=1 << 20).feed(data)


def open_transports(
    limits: Limits | None = None, now: float = 0.0
) -> tuple[ClientTransport, ServerTransport]:
    client = ClientTransport("localhost:1", random_bytes=_keys, now=now)
    server = ServerTransport(limits, now=now)
    server.receive_data(client.data_to_send(), now)
    assert isinstance(server.next_event(), HandshakeRequested)
    server.accept()
    client.receive_data(server.data_to_send(), now)
    assert isinstance(client.next_event(), Connected)
    return client, server


# -- the upgrade -----------------------------------------------------------------------------


def test_upgrade_both_sides() -> None:
    client = ClientTransport("example.org:443", path="/rpc", compression_level=3,
                             random_bytes=_keys)
    assert client.state is ConnectionState.CONNECTING
    server = ServerTransport()
    server.receive_data(client.data_to_send())
    (requested,) = events(server)
    assert isinstance(requested, HandshakeRequested)
    assert (requested.path, requested.origin, requested.compression_level) == ("/rpc", None, 3)
    assert server.state is ConnectionState.CONNECTING  # until accept()
    server.accept()
    assert server.state is OPEN
    client.receive_data(server.data_to_send())
    (connected,) = events(client)
    assert isinstance(connected, Connected) and connected.compression_level == 3
    assert client.state is OPEN


def test_client_refuses_a_level_outside_0_to_9() -> None:
    with pytest.raises(LocalProtocolError):
        ClientTransport("h", compression_level=10)


def test_a_refused_upgrade_reaches_the_client_with_its_reason() -> None:
    client = ClientTransport("h", random_bytes=_keys)
    server = ServerTransport()
    server.receive_data(client.data_to_send())
    events(server)
    server.refuse(403, "no entry")
    assert server.state is CLOSED
    assert events(server) == [ConnectionClosed(None, "handshake refused (403): no entry")]
    client.receive_data(server.data_to_send())
    refused, closed = events(client)
    assert refused == HandshakeRefused(403, "no entry")
    assert isinstance(closed, ConnectionClosed) and closed.error is None
    assert client.state is CLOSED


@pytest.mark.parametrize("split", ["head-then-body", "byte-by-byte", "head-then-eof"])
def test_a_refusal_whose_body_comes_later_still_carries_its_reason(split: str) -> None:
    # servers that write the head and the body separately (uvicorn's wsproto) or close
    # before the body: the reason is read to the end of the body, or up to EOF
    client = ClientTransport("h", random_bytes=_keys)
    server = ServerTransport()
    server.receive_data(client.data_to_send())
    events(server)
    server.refuse(403, "no entry")
    answer = server.data_to_send()
    head, _, body = answer.partition(b"\r\n\r\n")
    if split == "byte-by-byte":
        for i in range(len(answer)):
            client.receive_data(answer[i : i + 1])
    else:
        client.receive_data(head + b"\r\n\r\n")
        assert events(client) == []  # not reported before the body
        client.receive_data(body if split == "head-then-body" else b"")
    refused, closed = events(client)
    reason = "no entry" if split != "head-then-eof" else "Forbidden"
    assert refused == HandshakeRefused(403, reason)
    assert isinstance(closed, ConnectionClosed) and client.state is CLOSED


def test_frames_sent_with_the_101_reach_the_client() -> None:
    client = ClientTransport("h", random_bytes=_keys)
    server = ServerTransport()
    server.receive_data(client.data_to_send())
    events(server)
    server.accept()
    server.send_message(b"first")
    client.receive_data(server.data_to_send())  # the 101 and a frame in one read
    assert [type(e) for e in events(client)] == [Connected, MessageReceived]


# -- frames at any boundary ----------------------------------------------------------------

payloads = st.binary(max_size=300)
frame_specs = st.lists(
    st.tuples(st.sampled_from(["binary", "text", "ping", "split"]), payloads), max_size=8
)


def _client_wire(specs: list[tuple[str, bytes]], close: bool) -> bytes:
    wire = b""
    for kind, payload in specs:
        if kind == "binary":
            wire += masked(Opcode.BINARY, payload)
        elif kind == "text":
            wire += masked(Opcode.TEXT, payload.hex().encode())
        elif kind == "ping":
            wire += masked(Opcode.PING, payload[:125])
        else:  # a binary message in two fragments
            cut = len(payload) // 2
            first = masked(Opcode.BINARY, payload[:cut])
            wire += bytes([first[0] & 0x7F]) + first[1:]  # FIN cleared
            wire += masked(Opcode.CONTINUATION, payload[cut:])
    if close:
        wire += masked(Opcode.CLOSE, close_payload(1000, "bye"))
    return wire


def _feed_server(chunks: list[bytes]) -> tuple[list[Any], bytes, ConnectionState]:
    server = ServerTransport()
    seen: list[Any] = []
    for chunk in chunks:
        server.receive_data(chunk)
        for event in events(server):
            seen.append(event)
            if isinstance(event, HandshakeRequested):
                server.accept()
                seen.extend(events(server))
    return seen, server.data_to_send(), server.state


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(frame_specs, st.booleans(), st.lists(st.integers(0, 10_000), max_size=30))
@settings(max_examples=150, deadline=None)
def test_server_events_do_not_depend_on_read_boundaries(
    specs: list[tuple[str, bytes]], close: bool, cuts: list[int]
) -> None:
    request = ClientTransport("h", random_bytes=_keys).data_to_send()
    wire = request + _client_wire(specs, close)
    whole = _feed_server([wire])
    chunked = _feed_server(_cut(wire, cuts))
    assert chunked == whole
    bytewise = _feed_server([wire[i : i + 1] for i in range(len(wire))])
    assert bytewise == whole
    seen, _out, _state = whole
    messages = [e.payload for e in seen if isinstance(e, MessageReceived)]
    assert messages == [p for kind, p in specs if kind in ("binary", "split")]
    assert sum(isinstance(e, MessageIgnored) for e in seen) == sum(k == "text" for k, _ in specs)


@given(st.lists(st.tuples(st.sampled_from(["binary", "ping"]), payloads), max_size=8),
       st.lists(st.integers(0, 10_000), max_size=30))
@settings(max_examples=100, deadline=None)
def test_client_events_do_not_depend_on_read_boundaries(
    specs: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    server = ServerTransport()
    server.receive_data(ClientTransport("h", random_bytes=_keys).data_to_send())
    events(server)
    server.accept()
    wire = server.data_to_send()
    for kind, payload in specs:
        wire += plain(Opcode.BINARY if kind == "binary" else Opcode.PING,
                      payload if kind == "binary" else payload[:125])

    def feed(chunks: list[bytes]) -> tuple[list[Any], bytes]:
        client = ClientTransport("h", random_bytes=_keys)
        client.data_to_send()
        for chunk in chunks:
            client.receive_data(chunk)
        return events(client), client.data_to_send()

    whole = feed([wire])
    assert feed(_cut(wire, cuts)) == whole
    assert [e.payload for e in whole[0] if isinstance(e, MessageReceived)] == [
        p for kind, p in specs if kind == "binary"
    ]


# -- ping / pong -------------------------------------------------------------------------------


def test_a_ping_is_answered_with_its_payload() -> None:
    _client, server = open_transports()
    server.receive_data(masked(Opcode.PING, b"are you there"))
    assert server.data_to_send() == plain(Opcode.PONG, b"are you there")
    assert events(server) == []


def test_an_unwritten_pong_is_replaced_by_the_answer_to_a_newer_ping() -> None:
    _client, server = open_transports()
    for n in range(50):
        server.receive_data(masked(Opcode.PING, b"p%d" % n))
    pong = plain(Opcode.PONG, b"p49")
    assert server.outgoing_size == len(pong)
    assert server.data_to_send() == pong
    # once written, the next ping gets its own pong
    server.receive_data(masked(Opcode.PING, b"again"))
    assert server.data_to_send() == plain(Opcode.PONG, b"again")


def test_coalescing_keeps_messages_queued_around_the_pong() -> None:
    _client, server = open_transports()
    server.receive_data(masked(Opcode.PING, b"1"))
    server.send_message(b"between")
    server.receive_data(masked(Opcode.PING, b"2") + masked(Opcode.PING, b"3"))
    out = server.data_to_send()
    frames = server_frames(out)
    assert [(f.opcode, f.payload) for f in frames] == [
        (Opcode.PONG, b"3"), (Opcode.BINARY, b"between")
    ]
    assert server.outgoing_size == 0


def test_the_client_answers_pings_too_and_its_pongs_coalesce() -> None:
    client, _server = open_transports()
    client.receive_data(plain(Opcode.PING, b"a") + plain(Opcode.PING, b"b"))
    (pong,) = client_frames(client.data_to_send())
    assert (pong.opcode, pong.payload) == (Opcode.PONG, b"b")


@given(
    st.integers(60, 600),
    st.integers(0, 125),
    st.lists(st.one_of(st.just("ping"), st.just("flush"), st.integers(0, 200)), max_size=80),
)
@settings(max_examples=200, deadline=None)
def test_a_ping_flood_never_passes_the_outgoing_bound(
    bound: int, ping_size: int, ops: list[str | int]
) -> None:
    _client, server = open_transports(Limits(max_outgoing_bytes=bound))
    ping = masked(Opcode.PING, b"x" * ping_size)
    written = b""
    for op in ops:
        if server.state is not OPEN:
            break
        if op == "ping":
            server.receive_data(ping)
        elif op == "flush":
            chunk = server.data_to_send()
            pongs = [f for f in server_frames(chunk) if f.opcode is Opcode.PONG]
            assert len(pongs) <= 1  # however many pings came since the last write
            written += chunk
        else:
            assert isinstance(op, int)
            server.send_message(b"m" * op)
        if server.state is OPEN:
            assert server.outgoing_size <= bound
    size = server.outgoing_size
    rest = server.data_to_send()
    assert size == len(rest)  # outgoing_size is exactly what is queued
    assert sum(f.opcode is Opcode.PONG for f in server_frames(rest)) <= 1
    if server.state is ERROR:
        (closed,) = events(server)
        assert closed.code == 1008 and isinstance(closed.error, PeerNotReading)
        assert rest.endswith(plain(Opcode.CLOSE, close_payload(1008, "not reading")))
    frames = server_frames(written + rest)
    assert all(f.payload == b"x" * ping_size for f in frames if f.opcode is Opcode.PONG)


def test_a_larger_newer_ping_cannot_push_the_queue_past_the_bound() -> None:
    _client, server = open_transports(Limits(max_outgoing_bytes=100))
    server.receive_data(masked(Opcode.PING, b""))  # a 2-byte pong, unwritten
    assert server.send_message(b"x" * 96)  # 98 more: 100 bytes queued, at the bound
    server.receive_data(masked(Opcode.PING, b"y" * 125))  # its pong is 127 bytes
    assert server.state is not OPEN or server.outgoing_size <= 100


# -- the outgoing bound ------------------------------------------------------------------------


def test_outgoing_size_counts_every_frame_until_written() -> None:
    _client, server = open_transports(Limits(idle_timeout=1.0))
    server.send_message(b"abc")
    server.receive_data(masked(Opcode.PING, b"p"), 0.0)
    server.handle_timer(1.0)  # keep-alive ping
    expected = plain(Opcode.BINARY, b"abc") + plain(Opcode.PONG, b"p") + plain(Opcode.PING, b"hl")
    assert server.outgoing_size == len(expected)
    assert server.data_to_send() == expected
    assert server.outgoing_size == 0 and server.data_to_send() == b""


def test_a_pong_that_does_not_fit_closes_with_1008() -> None:
    _client, server = open_transports(Limits(max_outgoing_bytes=100))
    server.receive_data(masked(Opcode.PING, b"z" * 125))
    (closed,) = events(server)
    assert closed.code == 1008 and isinstance(closed.error, PeerNotReading)
    assert server.state is ERROR
    # the goodbye goes past the bound on purpose: it is the last frame
    assert server.data_to_send() == plain(Opcode.CLOSE, close_payload(1008, "not reading"))


def test_a_keepalive_ping_counts_against_the_bound() -> None:
    _client, server = open_transports(Limits(max_outgoing_bytes=3, idle_timeout=1.0))
    server.handle_timer(1.0)  # the ping frame is 4 bytes
    (closed,) = events(server)
    assert closed.code == 1008 and isinstance(closed.error, PeerNotReading)
    _client, server = open_transports(Limits(max_outgoing_bytes=4, idle_timeout=1.0))
    server.handle_timer(1.0)
    assert server.state is OPEN and server.outgoing_size == 4


def test_a_peer_that_stops_reading_ends_the_connection_with_1008() -> None:
    _client, server = open_transports(Limits(max_outgoing_bytes=1000))
    sent = 0
    while server.send_message(b"e" * 90):
        sent += 1
    assert sent == 10  # ten 92-byte frames fit, the eleventh does not
    assert server.state is ERROR
    (closed,) = events(server)
    assert closed == ConnectionClosed(closed.code, closed.reason, closed.error)
    assert closed.code == 1008 and isinstance(closed.error, PeerNotReading)
    with pytest.raises(LocalProtocolError):
        server.send_message(b"more")
    frames = server_frames(server.data_to_send())
    assert [f.opcode for f in frames] == [Opcode.BINARY] * 10 + [Opcode.CLOSE]
    assert frames[-1].close_code == 1008
    assert events(server) == []  # reported once


def test_the_client_bound_counts_its_masked_frames() -> None:
    client = ClientTransport("h", random_bytes=_keys, limits=Limits(max_outgoing_bytes=110))
    server = ServerTransport()
    server.receive_data(client.data_to_send())
    events(server)
    server.accept()
    client.receive_data(server.data_to_send())
    events(client)
    assert client.send_message(b"a" * 100)  # 2 + 4 (mask) + 100 = 106
    assert client.outgoing_size == 106
    assert not client.send_message(b"")  # 6 more bytes do not fit
    (closed,) = events(client)
    assert closed.code == 1008


# -- closing ---------------------------------------------------------------------------------


def test_close_handshake_started_here() -> None:
    _client, server = open_transports()
    server.close(1000, "bye")
    assert server.state is CLOSING
    assert server.data_to_send() == plain(Opcode.CLOSE, close_payload(1000, "bye"))
    server.receive_data(masked(Opcode.BINARY, b"late"))  # dropped while closing
    server.receive_data(masked(Opcode.PING, b"late"))  # not answered while closing
    assert server.data_to_send() == b""
    assert events(server) == []
    server.receive_data(masked(Opcode.CLOSE, close_payload(1000, "bye")))
    assert server.state is CLOSED
    assert events(server) == [ConnectionClosed(1000, "bye")]
    assert server.data_to_send() == b""  # nothing echoed: the handshake is complete


def test_a_close_received_is_echoed_and_nothing_after_it_is_read() -> None:
    _client, server = open_transports()
    server.receive_data(
        masked(Opcode.CLOSE, close_payload(4001, "app")) + masked(Opcode.BINARY, b"after")
    )
    assert events(server) == [ConnectionClosed(4001, "app")]
    assert server.data_to_send() == plain(Opcode.CLOSE, close_payload(4001, "app"))
    assert server.state is CLOSED


def test_an_empty_close_is_echoed_empty_and_reported_as_1005() -> None:
    client, _server = open_transports()
    client.receive_data(plain(Opcode.CLOSE))
    assert events(client) == [ConnectionClosed(1005, "")]
    (echo,) = client_frames(client.data_to_send())
    assert (echo.opcode, echo.payload) == (Opcode.CLOSE, b"")


def test_close_now_starts_the_close_timeout_at_now() -> None:
    _client, server = open_transports(Limits(close_timeout=5.0, idle_timeout=1000.0))
    # idle since 0.0; closing at 100.0 must not expire at once
    server.close(1000, "", now=100.0)
    assert server.get_timer() == 105.0
    server.handle_timer(100.0)
    server.handle_timer(104.999)
    assert server.state is CLOSING and events(server) == []
    server.handle_timer(105.0)
    assert server.state is CLOSED
    assert events(server) == [ConnectionClosed(None, "peer did not answer the close frame in time")]


def test_close_without_now_counts_from_the_last_read() -> None:
    _client, server = open_transports(Limits(close_timeout=5.0, idle_timeout=1000.0))
    server.receive_data(masked(Opcode.BINARY, b"x"), 40.0)
    server.close()
    assert server.get_timer() == 45.0


def test_close_during_the_handshake_ends_at_once_and_twice_is_refused() -> None:
    server = ServerTransport()
    server.close()
    assert server.state is CLOSED
    assert events(server) == [ConnectionClosed(None, "closed during the handshake")]
    with pytest.raises(LocalProtocolError):
        server.close()
    _client, server = open_transports()
    server.close()
    with pytest.raises(LocalProtocolError):
        server.close()  # already closing
    with pytest.raises(LocalProtocolError):
        server.send_message(b"x")


def test_eof_and_failed_writes_end_the_connection_as_1006() -> None:
    _client, server = open_transports()
    server.receive_data(b"")
    assert events(server) == [ConnectionClosed(1006, "connection lost (EOF without a close frame)")]
    assert server.state is ERROR
    server.receive_data(masked(Opcode.BINARY, b"x"))  # after the end: dropped
    assert events(server) == []

    _client, server = open_transports()
    server.send_message(b"never written")
    server.send_failed()
    assert server.outgoing_size == 0 and server.data_to_send() == b""
    assert events(server) == [ConnectionClosed(1006, "connection lost (write failed)")]


def test_eof_while_closing_is_a_clean_end() -> None:
    _client, server = open_transports()
    server.close()
    server.receive_data(b"")
    assert server.state is CLOSED


def test_a_protocol_error_sends_its_code_and_ends_once() -> None:
    _client, server = open_transports()
    server.receive_data(plain(Opcode.BINARY, b"unmasked") + masked(Opcode.BINARY, b"ok"))
    (closed,) = events(server)
    assert closed.code == 1002 and isinstance(closed.error, RemoteProtocolError)
    (goodbye,) = server_frames(server.data_to_send())
    assert goodbye.close_code == 1002


def test_text_messages_are_ignored_and_counted() -> None:
    _client, server = open_transports()
    server.receive_data(masked(Opcode.TEXT, b"hi") + masked(Opcode.BINARY, b"b"))
    assert events(server) == [MessageIgnored("text message"), MessageReceived(b"b")]
    assert server.ignored_messages == 1


# -- timers ----------------------------------------------------------------------------------


def test_handshake_timeout_with_the_request_trickling_in() -> None:
    request = ClientTransport("h", random_bytes=_keys).data_to_send()
    server = ServerTransport(Limits(handshake_timeout=10.0), now=0.0)
    step = 9.9 / len(request)
    for i, byte in enumerate(request[:-1]):  # all but the last byte, one per read
        now = i * step
        server.receive_data(bytes([byte]), now)
        assert server.get_timer() == 10.0  # data trickling in does not extend the deadline
        server.handle_timer(now)
        assert server.state is ConnectionState.CONNECTING
    server.handle_timer(9.999)
    assert server.state is ConnectionState.CONNECTING and events(server) == []
    server.handle_timer(10.0)
    assert server.state is ERROR
    (closed,) = events(server)
    assert closed.code == 1002 and isinstance(closed.error, RemoteProtocolError)
    assert server.data_to_send() == b""  # no answer to a request never finished
    server.receive_data(request[-1:], 10.1)
    assert events(server) == []


def test_a_request_waiting_for_accept_still_times_out() -> None:
    request = ClientTransport("h", random_bytes=_keys).data_to_send()
    server = ServerTransport(now=0.0)
    server.receive_data(request, 3.0)
    assert isinstance(server.next_event(), HandshakeRequested)
    server.handle_timer(10.0)
    assert server.state is ERROR
    with pytest.raises(LocalProtocolError):
        server.accept()


def test_the_first_read_starts_the_clock_when_none_was_given() -> None:
    server = ServerTransport()
    assert server.get_timer() is None
    server.receive_data(b"GET", 50.0)
    assert server.get_timer() == 60.0


def test_the_client_times_out_a_server_that_never_answers() -> None:
    client = ClientTransport("h", random_bytes=_keys, now=0.0)
    client.receive_data(b"HTTP/1.1 101 Swi", 5.0)
    client.handle_timer(9.9)
    assert client.state is ConnectionState.CONNECTING
    client.handle_timer(10.0)
    assert client.state is ERROR
    assert events(client)[-1].code == 1002


def test_keepalive_ping_then_idle_close() -> None:
    _client, server = open_transports(Limits(idle_timeout=5.0))
    assert server.get_timer() == 5.0
    server.handle_timer(4.9)
    assert server.data_to_send() == b""
    server.handle_timer(5.0)
    assert server.data_to_send() == plain(Opcode.PING, b"hl")
    assert server.get_timer() == 10.0  # the answer is due within another idle period
    server.handle_timer(9.9)
    assert server.state is OPEN
    server.handle_timer(10.0)
    assert server.state is ERROR
    (closed,) = events(server)
    assert closed.code == 1001 and isinstance(closed.error, RemoteProtocolError)


def test_a_pong_or_any_read_keeps_the_connection_alive() -> None:
    _client, server = open_transports(Limits(idle_timeout=5.0))
    server.handle_timer(5.0)
    server.data_to_send()
    server.receive_data(masked(Opcode.PONG, b"hl"), 6.0)
    assert server.get_timer() == 11.0
    server.handle_timer(10.0)
    assert server.state is OPEN and server.data_to_send() == b""
    server.receive_data(masked(Opcode.BINARY, b"x"), 10.5)
    assert server.get_timer() == 15.5


def test_ended_connections_have_no_timer() -> None:
    _client, server = open_transports()
    server.receive_data(b"")
    assert server.get_timer() is None
    server.handle_timer(1e9)  # nothing happens, nothing raises
    assert events(server)[-1].code == 1006


def test_the_references_refusals_are_reported_at_once() -> None:
    # the Rust reference refuses with a 400 that has no length and no body, on a socket it
    # keeps open: waiting for that body would wait until the handshake timeout
    from hardlight_conformance._data import load_json, traffic_dir

    recorded = load_json(traffic_dir() / "handshake_failures.decoded.json")["connections"]
    refusals = [
        c["http_response"]["raw"]
        for c in recorded
        if (c.get("http_response") or {}).get("raw", "").startswith("HTTP/1.1 4")
    ]
    assert refusals
    for raw in refusals:
        client = ClientTransport("h", random_bytes=_keys)
        client.data_to_send()
        client.receive_data(raw.encode("latin-1"), 0.0)
        refused, closed = events(client)
        assert isinstance(refused, HandshakeRefused) and refused.status_code == 400
        assert isinstance(closed, ConnectionClosed) and client.state is CLOSED
