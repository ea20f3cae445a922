"""The HardLight session without a transport, its joining to one, and MessageConnection.

Whole messages in (``receive_message``), packed messages out (``messages_to_send``),
events from ``next_event``; call ids, duplicates, the ignore rules and the end.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hl_pair import drain, open_pair
from hypothesis import given, settings
from hypothesis import strategies as st

from hardlight_core import (
    ClientNotConnected,
    Err,
    LocalProtocolError,
    MessageTooLarge,
    NewEvent,
    Ok,
    PeerNotReading,
    RpcHandlerError,
    RPCRequest,
    RPCResponse,
    StateChange,
    StateUpdate,
    TooManyCallsInFlight,
    Topic,
    deflate,
    pack,
    unpack_client_message,
    unpack_server_message,
)
from hardlight_core._connection import ClientConnection, MessageConnection, ServerConnection
from hardlight_core._events import (
    CallFailed,
    CallReceived,
    ConnectionClosed,
    EventReceived,
    HandshakeRequested,
    MessageIgnored,
    ResponseReceived,
    StateChanged,
)
from hardlight_core._framing import FrameReader, Opcode, frame_bytes
from hardlight_core._limits import Limits
from hardlight_core._session import ClientMessageSession, ServerMessageSession, SessionState
from hardlight_core._state import ConnectionState

CALL = b"\x03\0\0\0\0\0\0\0"  # an archived RpcCall (the bytes do not matter to the session)


def request(call_id: int, internal: bytes = CALL, level: int = 6) -> bytes:
    return pack(RPCRequest(call_id, internal), level)


def response(call_id: int, value: bytes = b"\x07\0\0\0") -> bytes:
    return pack(RPCResponse(call_id, Ok(value)), 6)


def bomb(size: int) -> bytes:
    """A tiny message that inflates to ``size`` bytes."""
    return deflate(b"\0" * size, 9)


def events(machine: Any) -> list[Any]:
    out = []
    while (event := machine.next_event()) is not None:
        out.append(event)
    return out


# -- the server session ------------------------------------------------------------------------


def test_a_request_becomes_a_call() -> None:
    session = ServerMessageSession()
    session.receive_message(request(9, b"abcd"))
    assert events(session) == [CallReceived(9, b"abcd")]
    assert session.calls_in_flight == 1 and 9 in session.in_flight


@pytest.mark.parametrize(
    "payload",
    [b"", b"garbage", deflate(b"\0" * 3, 6), pack(NewEvent(Topic(), b""), 6) + b"x"],
    ids=["empty", "not-deflate", "short-archive", "trailing"],
)
def test_undecodable_messages_are_ignored_and_counted(payload: bytes) -> None:
    session = ServerMessageSession()
    session.receive_message(payload)
    (ignored,) = events(session)
    assert isinstance(ignored, MessageIgnored) and "undecodable" in ignored.reason
    assert session.ignored_messages == 1 and session.calls_in_flight == 0


def test_twenty_copies_of_one_id_are_one_call() -> None:
    session = ServerMessageSession()
    for _ in range(20):
        session.receive_message(request(4))
    got = events(session)
    assert got[0] == CallReceived(4, CALL)
    assert [type(e) for e in got[1:]] == [MessageIgnored] * 19
    assert session.duplicate_calls == 19 and session.ignored_messages == 19


def test_twenty_copies_in_one_read_of_a_server_connection_are_one_call() -> None:
    client, server = open_pair()
    client.start_call(CALL)
    server.receive_data(client.data_to_send() * 20)
    got = drain(server)
    assert sum(isinstance(e, CallReceived) for e in got) == 1
    assert server.session.duplicate_calls == 19


def test_an_answered_id_stays_in_flight_until_messages_to_send_hands_it_on() -> None:
    session = ServerMessageSession()
    session.receive_message(request(5))
    events(session)
    session.send_response(5, Ok(b""))
    session.receive_message(request(5, b"second"))  # answered, not handed on: still in flight
    assert [type(e) for e in events(session)] == [MessageIgnored]
    assert session.duplicate_calls == 1 and session.calls_in_flight == 1
    assert session.messages_to_send() == [pack(RPCResponse(5, Ok(b"")), 6)]
    assert session.calls_in_flight == 0
    session.receive_message(request(5, b"third"))
    assert events(session) == [CallReceived(5, b"third")]


def test_take_messages_keeps_ids_until_release_answered() -> None:
    session = ServerMessageSession()
    session.receive_message(request(1))
    session.send_response(1, Ok(b""))
    assert len(session.take_messages()) == 1
    assert 1 in session.in_flight  # taken but not yet handed to a transport
    session.release_answered()
    assert 1 not in session.in_flight
    session.release_answered()  # idempotent
    assert session.calls_in_flight == 0


def test_an_answered_id_is_in_flight_until_data_to_send_on_a_server_connection() -> None:
    client, server = open_pair()
    call = client.start_call(CALL)
    frame = client.data_to_send()
    server.receive_data(frame)
    drain(server)
    server.send_response(call, Ok(b""))
    assert server.calls_in_flight == 1
    server.receive_data(frame)  # the same id again before the answer was written
    assert [type(e) for e in drain(server)] == [MessageIgnored]
    server.data_to_send()
    assert server.calls_in_flight == 0
    server.receive_data(frame)
    assert [type(e) for e in drain(server)] == [CallReceived]


def test_server_messages_go_out_in_order_at_the_session_level() -> None:
    session = ServerMessageSession(compression_level=0)
    session.receive_message(request(2))
    topic = Topic.from_str("room")
    session.send_state_change([StateUpdate(0, b"\x01\0\0\0")])
    session.send_response(2, Err(RpcHandlerError.HandlerPanicked))
    session.send_event(topic, b"payload")
    out = session.messages_to_send()
    assert [unpack_server_message(m) for m in out] == [
        StateChange([StateUpdate(0, b"\x01\0\0\0")]),
        RPCResponse(2, Err(RpcHandlerError.HandlerPanicked)),
        NewEvent(topic, b"payload"),
    ]
    assert out[1] == pack(RPCResponse(2, Err(RpcHandlerError.HandlerPanicked)), 0)
    assert session.messages_to_send() == []


def test_a_message_inflating_past_the_limit_raises_message_too_large() -> None:
    session = ServerMessageSession(Limits(max_inflated_size=1000))
    with pytest.raises(MessageTooLarge) as info:
        session.receive_message(bomb(1001))
    assert info.value.close_code == 1009
    assert events(session) == [] and session.ignored_messages == 0
    session.receive_message(deflate(b"\0" * 12, 6))  # within the limit: just undecodable
    assert [type(e) for e in events(session)] == [MessageIgnored]


def test_an_ended_server_session_drops_input_and_refuses_output() -> None:
    session = ServerMessageSession()
    session.receive_message(request(1))
    session.send_response(1, Ok(b""))
    events(session)
    session.end()
    assert session.state is SessionState.ENDED
    assert session.messages_to_send() == []  # the outbox went with the connection
    session.receive_message(request(2))
    assert events(session) == []
    for send in (
        lambda: session.send_response(1, Ok(b"")),
        lambda: session.send_event(Topic(), b""),
        lambda: session.send_state_change([]),
    ):
        with pytest.raises(LocalProtocolError):
            send()


# -- the client session ------------------------------------------------------------------------


def test_calls_take_the_lowest_free_id_and_are_queued_packed() -> None:
    session = ClientMessageSession(compression_level=1)
    assert [session.start_call(bytes([i])) for i in range(3)] == [0, 1, 2]
    out = session.messages_to_send()
    assert out == [request(i, bytes([i]), level=1) for i in range(3)]
    assert [unpack_client_message(m).id for m in out] == [0, 1, 2]
    session.receive_message(response(1))
    assert events(session) == [ResponseReceived(1, Ok(b"\x07\0\0\0"))]
    assert session.start_call(b"") == 1  # freed by its answer, lowest again


def test_the_257th_call_is_refused_and_nothing_is_queued() -> None:
    session = ClientMessageSession()
    for _ in range(256):
        session.start_call(CALL)
    assert len(session.messages_to_send()) == 256
    with pytest.raises(TooManyCallsInFlight):
        session.start_call(CALL)
    assert session.messages_to_send() == []
    assert session.calls_in_flight == 256
    session.receive_message(response(200))
    assert session.start_call(CALL) == 200


def test_an_abandoned_calls_late_answer_is_dropped_and_frees_its_id() -> None:
    session = ClientMessageSession()
    first = session.start_call(CALL)
    session.abandon_call(first)
    assert session.start_call(CALL) == 1  # 0 is still reserved: the server may answer it
    session.receive_message(response(first))
    (ignored,) = events(session)
    assert isinstance(ignored, MessageIgnored) and "nobody waits" in ignored.reason
    assert session.start_call(CALL) == first


def test_answers_nobody_waits_for_are_ignored() -> None:
    session = ClientMessageSession()
    session.receive_message(response(42))
    session.abandon_call(43)  # not in flight: nothing to abandon
    assert [type(e) for e in events(session)] == [MessageIgnored]
    assert session.calls_in_flight == 0


def test_forget_call_frees_the_id_at_once() -> None:
    session = ClientMessageSession()
    call = session.start_call(CALL)
    session.forget_call(call)
    assert session.calls_in_flight == 0 and session.start_call(CALL) == call


def test_events_and_state_changes_arrive() -> None:
    session = ClientMessageSession()
    topic = Topic.from_bytes(b"\x05")
    session.receive_message(pack(NewEvent(topic, b"e"), 6))
    session.receive_message(pack(StateChange([StateUpdate(1, b"s")]), 6))
    session.receive_message(b"junk")
    assert events(session)[:2] == [
        EventReceived(topic, b"e"),
        StateChanged([StateUpdate(1, b"s")]),
    ]
    assert session.ignored_messages == 1


def test_end_fails_every_pending_call_once() -> None:
    session = ClientMessageSession()
    ids = [session.start_call(CALL) for _ in range(5)]
    session.receive_message(response(ids[1]))
    session.abandon_call(ids[3])  # nobody waits: no CallFailed for it
    events(session)
    session.end()
    failed = events(session)
    assert [e.call_id for e in failed] == [ids[0], ids[2], ids[4]]
    assert all(isinstance(e, CallFailed) and isinstance(e.error, ClientNotConnected)
               for e in failed)
    assert session.messages_to_send() == []
    session.end()
    assert events(session) == []
    session.receive_message(response(ids[0]))
    assert events(session) == []
    with pytest.raises(ClientNotConnected):
        session.start_call(CALL)


@given(st.lists(st.tuples(st.sampled_from(["call", "answer", "abandon"]), st.integers(0, 300)),
                max_size=120))
@settings(max_examples=150, deadline=None)
def test_client_ids_against_a_model(ops: list[tuple[str, int]]) -> None:
    session = ClientMessageSession()
    waiting: set[int] = set()
    abandoned: set[int] = set()
    for op, n in ops:
        taken = waiting | abandoned
        if op == "call":
            if len(taken) == 256:
                with pytest.raises(TooManyCallsInFlight):
                    session.start_call(CALL)
                continue
            call_id = session.start_call(CALL)
            assert call_id == min(set(range(256)) - taken)  # lowest free, never a taken one
            waiting.add(call_id)
        elif op == "answer":
            call_id = n % 256
            session.receive_message(response(call_id))
            (event,) = events(session)
            if call_id in waiting:
                assert event == ResponseReceived(call_id, Ok(b"\x07\0\0\0"))
            else:
                assert isinstance(event, MessageIgnored)
            waiting.discard(call_id)
            abandoned.discard(call_id)
        elif waiting:
            call_id = sorted(waiting)[n % len(waiting)]
            session.abandon_call(call_id)
            waiting.discard(call_id)
            abandoned.add(call_id)
        assert session.calls_in_flight == len(waiting | abandoned)
    session.end()
    assert [e.call_id for e in events(session)] == sorted(waiting)


# -- joined to a transport -------------------------------------------------------------------


def test_message_too_large_on_inflate_closes_the_server_connection_with_1009() -> None:
    _client, server = open_pair(limits=Limits(max_inflated_size=1 << 16))
    server.receive_data(frame_bytes(Opcode.BINARY, bomb((1 << 16) + 1), mask=True))
    (closed,) = drain(server)
    assert isinstance(closed, ConnectionClosed) and closed.code == 1009
    assert isinstance(closed.error, MessageTooLarge)
    assert server.state is ConnectionState.ERROR
    (goodbye,) = FrameReader(expect_masked=False, max_message_size=1000).feed(
        server.data_to_send()
    )
    assert goodbye.close_code == 1009


def test_message_too_large_on_inflate_fails_the_clients_pending_calls() -> None:
    client = ClientConnection("h", limits=Limits(max_inflated_size=100))
    server = ServerConnection()
    server.receive_data(client.data_to_send())
    drain(server)
    server.accept()
    client.receive_data(server.data_to_send())
    drain(client)
    call = client.start_call(CALL)
    client.receive_data(frame_bytes(Opcode.BINARY, bomb(101), mask=False))
    failed, closed = drain(client)
    assert failed == CallFailed(call, failed.error) and isinstance(failed.error, ClientNotConnected)
    assert isinstance(closed, ConnectionClosed) and closed.code == 1009


def test_nothing_after_a_message_too_large_is_served() -> None:
    client, server = open_pair(limits=Limits(max_inflated_size=1 << 16))
    client.start_call(CALL)
    call = client.data_to_send()
    server.receive_data(frame_bytes(Opcode.BINARY, bomb(1 << 17), mask=True) + call)
    got = drain(server)
    assert not any(isinstance(e, CallReceived) for e in got)
    assert isinstance(got[-1], ConnectionClosed) and got[-1].code == 1009


# -- MessageConnection -----------------------------------------------------------------------

HANDSHAKE = HandshakeRequested("/rpc", ((b"origin", b"https://a.example"),), "https://a.example", 3)


def accepted(limits: Limits | None = None) -> MessageConnection:
    connection = MessageConnection(HANDSHAKE, limits)
    assert connection.next_event() is HANDSHAKE
    connection.accept()
    return connection


def test_message_connection_starts_with_its_handshake_and_reads_nothing_before_accept() -> None:
    connection = MessageConnection(HANDSHAKE)
    assert connection.state is ConnectionState.CONNECTING
    assert connection.compression_level == 3
    connection.receive_message(request(1))
    assert events(connection) == [HANDSHAKE]
    assert connection.calls_in_flight == 0
    assert connection.get_timer() is None


def test_message_connection_serves_calls_and_frees_ids_on_messages_to_send() -> None:
    connection = accepted()
    assert connection.state is ConnectionState.OPEN
    connection.receive_message(request(7, b"args"))
    assert events(connection) == [CallReceived(7, b"args")]
    connection.send_response(7, Ok(b"\x01"))
    connection.receive_message(request(7))  # answered, not yet taken: a duplicate
    assert [type(e) for e in events(connection)] == [MessageIgnored]
    assert connection.ignored_messages == 1
    assert connection.outgoing_size == len(pack(RPCResponse(7, Ok(b"\x01")), 3))
    assert connection.messages_to_send() == [pack(RPCResponse(7, Ok(b"\x01")), 3)]
    assert connection.outgoing_size == 0 and connection.calls_in_flight == 0
    connection.receive_message(request(7))
    assert [type(e) for e in events(connection)] == [CallReceived]


def test_message_connection_refusal() -> None:
    connection = MessageConnection(HANDSHAKE)
    connection.refuse(403, "origin not allowed")
    assert connection.refusal == (403, "origin not allowed")
    assert connection.state is ConnectionState.CLOSED
    assert events(connection) == [
        HANDSHAKE,
        ConnectionClosed(None, "handshake refused (403): origin not allowed"),
    ]
    assert connection.close_code is None
    with pytest.raises(LocalProtocolError):
        connection.accept()
    with pytest.raises(LocalProtocolError):
        connection.refuse()
    connection.receive_message(request(1))
    assert events(connection) == []


def test_accept_and_refuse_only_during_the_handshake() -> None:
    connection = accepted()
    with pytest.raises(LocalProtocolError):
        connection.accept()
    with pytest.raises(LocalProtocolError):
        connection.refuse()
    assert connection.refusal is None


def test_message_connection_oversized_message_closes_with_1009() -> None:
    connection = accepted(Limits(max_message_size=100))
    connection.receive_message(b"\x01" + b"\0" * 100)
    (closed,) = events(connection)
    assert closed.code == 1009 and isinstance(closed.error, MessageTooLarge)
    assert connection.close_code == 1009 and connection.state is ConnectionState.ERROR
    connection.receive_message(request(1))
    assert events(connection) == []


def test_message_connection_inflate_bomb_closes_with_1009() -> None:
    connection = accepted(Limits(max_inflated_size=1000))
    connection.receive_message(bomb(5000))
    (closed,) = events(connection)
    assert closed.code == 1009 and isinstance(closed.error, MessageTooLarge)
    assert connection.close_code == 1009


def test_message_connection_outgoing_bound_closes_with_1008() -> None:
    connection = accepted(Limits(max_outgoing_bytes=100))
    packed = pack(NewEvent(Topic.from_str("t"), b"x" * 20), 3)
    fitting = 100 // len(packed)
    assert all(connection.send_packed(packed) for _ in range(fitting))
    assert connection.outgoing_size == fitting * len(packed)
    assert connection.send_packed(packed) is False
    (closed,) = events(connection)
    assert closed.code == 1008 and isinstance(closed.error, PeerNotReading)
    assert connection.close_code == 1008 and connection.state is ConnectionState.ERROR
    with pytest.raises(LocalProtocolError):
        connection.send_packed(packed)
    with pytest.raises(LocalProtocolError):
        connection.send_event(Topic(), b"")


def test_message_connection_response_over_the_bound_closes_with_1008() -> None:
    connection = accepted(Limits(max_outgoing_bytes=30))
    connection.receive_message(request(1))
    events(connection)
    connection.send_response(1, Ok(random.Random(1).randbytes(100)))  # does not compress
    assert connection.close_code == 1008
    assert events(connection)[-1].code == 1008


def test_message_connection_close_and_peer_close() -> None:
    connection = accepted()
    connection.close(1001, "going away")
    assert connection.state is ConnectionState.CLOSED
    assert (connection.close_code, connection.close_reason) == (1001, "going away")
    assert events(connection) == [ConnectionClosed(1001, "going away")]
    with pytest.raises(LocalProtocolError):
        connection.send_state_change([])
    connection.peer_closed(1000)  # already ended: nothing more
    assert events(connection) == []

    connection = accepted()
    connection.receive_message(request(3))
    connection.peer_closed()
    assert events(connection)[-1] == ConnectionClosed(1005, "")
    assert connection.state is ConnectionState.CLOSED
    assert connection.session.state is SessionState.ENDED

    connection = MessageConnection(HANDSHAKE)
    connection.peer_closed(1001, "gone")
    assert connection.state is ConnectionState.ERROR  # gone before the handshake ended
    assert events(connection)[-1] == ConnectionClosed(1001, "gone")
