"""Call ids: 256 per connection, lowest free first, never reused while in flight."""

from __future__ import annotations

import pytest
from hl_pair import drain, open_pair

from hardlight_core import ClientNotConnected, Ok, TooManyCallsInFlight
from hardlight_core._calls import ClientCallTable, ServerInFlightTable
from hardlight_core._connection import ClientConnection
from hardlight_core._events import CallFailed, CallReceived, MessageIgnored, ResponseReceived


def test_lowest_free_id_and_the_257th_call() -> None:
    table = ClientCallTable()
    assert [table.allocate() for _ in range(256)] == list(range(256))
    with pytest.raises(TooManyCallsInFlight):
        table.allocate()
    assert table.release(17)
    assert table.allocate() == 17


def test_abandoned_id_stays_reserved_until_its_late_answer() -> None:
    table = ClientCallTable()
    call = table.allocate()
    table.abandon(call)
    assert table.allocate() == 1  # 0 is still reserved
    assert table.release(call) is False  # the late answer is dropped
    assert table.allocate() == 0


def test_fail_all_reports_the_waiting_calls() -> None:
    table = ClientCallTable()
    a, b = table.allocate(), table.allocate()
    table.abandon(b)
    assert table.fail_all() == [a]
    assert len(table) == 0


def test_server_ignores_a_duplicate_in_flight_id() -> None:
    table = ServerInFlightTable()
    assert table.start(5) and not table.start(5)
    assert table.finish(5) and table.start(5)


def test_twenty_copies_of_one_id_in_one_chunk_are_one_call() -> None:
    client, server = open_pair()
    client.start_call(b"\x01\0\0\0\x01\0\0\0")
    frame = client.data_to_send()
    server.receive_data(frame * 20)
    events = drain(server)
    assert sum(isinstance(e, CallReceived) for e in events) == 1
    assert sum(isinstance(e, MessageIgnored) for e in events) == 19
    assert server.ignored_messages == 19


def test_nothing_is_sent_for_the_257th_call() -> None:
    client, _server = open_pair()
    for _ in range(256):
        client.start_call(b"")
    client.data_to_send()
    with pytest.raises(TooManyCallsInFlight):
        client.start_call(b"")
    assert client.data_to_send() == b""


def test_calls_need_an_open_connection() -> None:
    client = ClientConnection("h")
    with pytest.raises(ClientNotConnected):
        client.start_call(b"")


def test_pending_calls_fail_when_the_connection_ends() -> None:
    client, server = open_pair()
    first, second = client.start_call(b""), client.start_call(b"")
    server.receive_data(client.data_to_send())
    drain(server)
    server.send_response(first, Ok(b""))
    client.receive_data(server.data_to_send())
    assert [type(e) for e in drain(client)] == [ResponseReceived]
    client.receive_data(b"")
    failed = [e for e in drain(client) if isinstance(e, CallFailed)]
    assert [e.call_id for e in failed] == [second]
    assert isinstance(failed[0].error, ClientNotConnected)
