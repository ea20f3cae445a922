"""The client engine: typed calls, decoded results and errors, events, the state mirror.

A bare ServerConnection plays the server, so every answer is exactly the bytes the
test chose; outcomes are asserted, no sockets.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hl_pair import KEY, drain
from hypothesis import given, settings
from hypothesis import strategies as st

from hardlight_apps.counter import Counter, CounterEvent, Decremented, Incremented
from hardlight_core import (
    ClientDecodeError,
    ClientEncodeError,
    ClientNotConnected,
    ConnectionRefused,
    DecodeError,
    Err,
    Ok,
    RpcError,
    RpcHandlerError,
    Service,
    StateUpdate,
    TooManyCallsInFlight,
    Topic,
    encode,
    u32,
)
from hardlight_core._client_core import (
    CallOutcome,
    ClientClosed,
    ClientCore,
    ClientOpened,
    EventDelivered,
    StateUpdated,
)
from hardlight_core._connection import ServerConnection
from hardlight_core._events import CallReceived, ConnectionClosed
from hardlight_core._framing import Opcode, frame_bytes
from hardlight_core._limits import Limits
from hardlight_core._service import ServiceSpec

SPEC = ServiceSpec.of(Counter)


class Echo(Service):
    """A service without connection state."""

    async def echo(self, value: u32) -> u32: ...


def connect(
    service: type[Any] = Counter, level: int = 6, limits: Limits | None = None
) -> tuple[ClientCore, ServerConnection, list[Any]]:
    client = ClientCore(service, "localhost:1", compression_level=level, limits=limits,
                        random_bytes=lambda n: KEY[:1] * n)
    server = ServerConnection()
    server.receive_data(client.data_to_send(), 0.0)
    drain(server)
    server.accept()
    opened = client.receive_data(server.data_to_send(), 0.0)
    return client, server, opened


def calls(client: ClientCore, server: ServerConnection) -> list[CallReceived]:
    server.receive_data(client.data_to_send())
    received = drain(server)
    assert all(isinstance(e, CallReceived) for e in received)
    return received


def test_opening_reports_the_servers_level() -> None:
    client, _server, opened = connect(level=2)
    assert opened == [ClientOpened(2)]
    assert client.connection.state.value == "open"


def test_calls_are_encoded_and_results_decoded() -> None:
    client, server, _ = connect()
    inc = client.start_call("increment", (5,))
    get = client.start_call("get", ())
    assert (inc, get) == (0, 1)
    received = calls(client, server)
    assert [(c.call_id, c.internal) for c in received] == [
        (inc, SPEC.encode_call("increment", 5)),
        (get, SPEC.encode_call("get")),
    ]
    server.send_response(get, Ok(SPEC.encode_return("get", 4_000_000_000)))
    server.send_response(inc, Ok(b""))
    outcomes = client.receive_data(server.data_to_send())
    assert outcomes == [CallOutcome(get, 4_000_000_000), CallOutcome(inc, None)]


@pytest.mark.parametrize("kind", list(RpcHandlerError), ids=lambda k: k.name)
def test_error_answers_become_their_exception(kind: RpcHandlerError) -> None:
    client, server, _ = connect()
    call = client.start_call("get", ())
    calls(client, server)
    server.send_response(call, Err(kind))
    (outcome,) = client.receive_data(server.data_to_send())
    assert outcome.call_id == call and outcome.value is None
    assert type(outcome.error) is type(RpcError.for_kind(kind))
    assert outcome.error.kind is kind
    assert "get" in str(outcome.error)


def test_an_answer_that_does_not_decode_is_a_client_decode_error() -> None:
    client, server, _ = connect()
    call = client.start_call("get", ())
    calls(client, server)
    server.send_response(call, Ok(b"\x01"))  # a u32 needs 4 bytes
    (outcome,) = client.receive_data(server.data_to_send())
    assert isinstance(outcome.error, ClientDecodeError) and "get" in str(outcome.error)


@pytest.mark.parametrize("args", [(-1,), (2**32,), ("five",), (), (1, 2)])
def test_bad_arguments_send_nothing_and_take_no_id(args: tuple[Any, ...]) -> None:
    client, _server, _ = connect()
    with pytest.raises(ClientEncodeError):
        client.start_call("increment", args)
    assert client.data_to_send() == b""
    assert client.start_call("get", ()) == 0


def test_an_unknown_method_sends_nothing() -> None:
    client, _server, _ = connect()
    with pytest.raises(LookupError):
        client.start_call("reset", ())
    assert client.data_to_send() == b""


def test_calls_need_an_open_connection() -> None:
    client = ClientCore(Counter, "h")
    client.data_to_send()
    with pytest.raises(ClientNotConnected):
        client.start_call("get", ())


def test_the_257th_call_is_refused_and_nothing_is_sent() -> None:
    client, server, _ = connect()
    for _ in range(256):
        client.start_call("get", ())
    assert len(calls(client, server)) == 256
    with pytest.raises(TooManyCallsInFlight):
        client.start_call("get", ())
    assert client.data_to_send() == b""
    server.send_response(17, Ok(SPEC.encode_return("get", 1)))
    assert client.receive_data(server.data_to_send()) == [CallOutcome(17, 1)]
    assert client.start_call("get", ()) == 17


def test_an_abandoned_calls_late_answer_is_dropped() -> None:
    client, server, _ = connect()
    call = client.start_call("get", ())
    calls(client, server)
    client.abandon_call(call)
    assert client.start_call("get", ()) == call + 1  # the id stays reserved meanwhile
    calls(client, server)
    server.send_response(call, Ok(SPEC.encode_return("get", 3)))
    assert client.receive_data(server.data_to_send()) == []
    assert client.connection.ignored_messages == 1
    assert client.start_call("get", ()) == call  # freed by the late answer


def test_every_pending_call_fails_when_the_connection_ends() -> None:
    client, server, _ = connect()
    ids = [client.start_call("get", ()) for _ in range(3)]
    calls(client, server)
    server.send_response(ids[1], Ok(SPEC.encode_return("get", 0)))
    client.receive_data(server.data_to_send())
    outcomes = client.receive_data(b"")
    *failed, closed = outcomes
    assert [o.call_id for o in failed] == [ids[0], ids[2]]
    assert all(isinstance(o.error, ClientNotConnected) for o in failed)
    assert isinstance(closed, ClientClosed) and closed.code == 1006
    assert isinstance(closed.exception(), ClientNotConnected)


def test_events_are_delivered_undecoded_and_decode_on_demand() -> None:
    client, server, _ = connect()
    topic = Topic.from_bytes(b"\x09")
    event = Decremented(to=1, from_=2)
    server.send_event(topic, encode(event, CounterEvent))
    (delivered,) = client.receive_data(server.data_to_send())
    assert delivered == EventDelivered(topic, encode(event, CounterEvent))
    assert delivered.decode(CounterEvent) == event
    with pytest.raises(DecodeError):
        EventDelivered(topic, b"\xff").decode(CounterEvent)


def test_state_changes_update_the_mirror() -> None:
    client, server, _ = connect()
    assert client.state.counter == 0
    topic = Topic.from_str("c")
    server.send_state_change([
        StateUpdate(0, encode(7, u32)),
        StateUpdate(1, encode(topic, Topic)),
        StateUpdate(5, b"unknown index"),
    ])
    assert client.receive_data(server.data_to_send()) == [StateUpdated((0, 1))]
    assert (client.state.counter, client.state.topic) == (7, topic)


def test_a_service_without_state_has_no_mirror() -> None:
    client, server, _ = connect(Echo)
    assert client.state is None
    server.send_state_change([StateUpdate(0, b"\0\0\0\0")])
    assert client.receive_data(server.data_to_send()) == []
    call = client.start_call("echo", (9,))
    calls(client, server)
    server.send_response(call, Ok(encode(9, u32)))
    assert client.receive_data(server.data_to_send()) == [CallOutcome(call, 9)]


def test_a_refused_handshake_is_connection_refused() -> None:
    client = ClientCore(Counter, "h")
    server = ServerConnection()
    server.receive_data(client.data_to_send())
    drain(server)
    server.refuse(403, "not you")
    outcomes = client.receive_data(server.data_to_send())
    assert isinstance(outcomes[0], ClientClosed) and outcomes[0].status_code == 403
    error = outcomes[0].exception()
    assert isinstance(error, ConnectionRefused)
    assert (error.status_code, error.reason) == (403, "not you")


def test_a_refused_handshake_is_reported_closed_once() -> None:
    client = ClientCore(Counter, "h")
    server = ServerConnection()
    server.receive_data(client.data_to_send())
    drain(server)
    server.refuse(403, "not you")
    outcomes = client.receive_data(server.data_to_send())
    assert sum(isinstance(o, ClientClosed) for o in outcomes) == 1


def test_close_handshake_from_the_client() -> None:
    client, server, _ = connect()
    client.close()
    server.receive_data(client.data_to_send())
    assert drain(server) == [ConnectionClosed(1000, "")]
    assert client.receive_data(server.data_to_send()) == [ClientClosed(1000, "")]


def test_the_server_closing_is_reported_with_its_code() -> None:
    client, server, _ = connect()
    server.close(4000, "maintenance")
    (closed,) = client.receive_data(server.data_to_send())
    assert closed == ClientClosed(4000, "maintenance")
    assert "4000 maintenance" in str(closed.exception())


def test_a_protocol_error_is_reported_with_its_error() -> None:
    client, _server, _ = connect()
    (closed,) = client.receive_data(frame_bytes(Opcode.BINARY, b"x", mask=True))  # masked
    assert closed.code == 1002 and closed.error is not None


def test_timers_pass_through_to_the_connection() -> None:
    client, server, _ = connect(limits=Limits(idle_timeout=3.0))
    assert client.get_timer() == 3.0
    assert client.handle_timer(3.0) == []
    server.receive_data(client.data_to_send())  # the client's keep-alive ping
    client.receive_data(server.data_to_send(), 4.0)  # the pong
    assert client.get_timer() == 7.0


@given(st.lists(st.integers(0, 10_000), max_size=20))
@settings(max_examples=60, deadline=None)
def test_outcomes_do_not_depend_on_read_boundaries(cuts: list[int]) -> None:
    def run(split: bool) -> list[Any]:
        client, server, _ = connect()
        ids = [client.start_call("increment", (n,)) for n in range(4)]
        calls(client, server)
        topic = Topic.from_bytes(b"\x01")
        for n, call in enumerate(ids):
            server.send_state_change([StateUpdate(0, encode(n, u32))])
            server.send_response(call, Ok(b""))
            server.send_event(topic, encode(Incremented(to=n, from_=0), CounterEvent))
        data = server.data_to_send()
        if not split:
            return client.receive_data(data)
        points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
        outcomes: list[Any] = []
        for a, b in itertools.pairwise(points):
            outcomes += client.receive_data(data[a:b])
        return outcomes

    whole = run(False)
    assert [type(o) for o in whole] == [StateUpdated, CallOutcome, EventDelivered] * 4
    assert run(True) == whole
