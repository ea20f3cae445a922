"""The client driver: one client across connections, with waiters, one timer, subscribers,
the state kept after a drop, connect errors and reconnect delays. No sockets: a bare
ServerConnection answers, concurrent.futures.Future plays the waiter."""

from __future__ import annotations

import itertools
import logging
import socket
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
from hl_pair import drain

import hardlight_core._client_driver as driver_module
from hardlight_apps.counter import Counter, CounterEvent, Incremented
from hardlight_core import (
    CallTimeout,
    ClientNotConnected,
    ConnectError,
    ConnectionRefused,
    HardLightError,
    Ok,
    StateUpdate,
    Topic,
    encode,
    u32,
)
from hardlight_core._client_core import EventDelivered
from hardlight_core._client_driver import ClientDriver, ClientPhase
from hardlight_core._config import ReconnectPolicy
from hardlight_core._connection import ServerConnection
from hardlight_core._events import CallReceived
from hardlight_core._limits import Limits
from hardlight_core._service import ServiceSpec

SPEC = ServiceSpec.of(Counter)
TOPIC = Topic.from_bytes(b"\x01")


@dataclass(frozen=True)
class Settings:
    """What the driver reads of a client configuration."""

    host_port: tuple[str, int] = ("localhost", 9000)
    compression_level: int = 6
    limits: Limits | None = None
    call_timeout: float | None = 30.0
    connect_timeout: float = 10.0
    reconnect: ReconnectPolicy | None = None


def handshake(driver: ClientDriver, now: float = 0.0) -> tuple[ServerConnection, Future[Any]]:
    opened: Future[Any] = Future()
    driver.new_connection(opened)
    assert driver.phase is ClientPhase.CONNECTING
    server = ServerConnection()
    server.receive_data(driver.data_to_send(), now)
    drain(server)
    server.accept()
    assert driver.receive_data(server.data_to_send(), now)
    return server, opened


def connected(**settings: Any) -> tuple[ClientDriver, ServerConnection]:
    driver = ClientDriver(Counter, Settings(**settings))
    server, opened = handshake(driver)
    assert opened.done() and opened.result() is None
    return driver, server


def call(driver: ClientDriver, server: ServerConnection, method: str = "get", now: float = 0.0,
         timeout: float | None = None) -> tuple[int, Future[Any]]:
    waiter: Future[Any] = Future()
    call_id = driver.start_call(method, (), waiter, now, timeout)
    server.receive_data(driver.data_to_send())
    assert [type(e) for e in drain(server)] == [CallReceived]
    return call_id, waiter


def answer(driver: ClientDriver, server: ServerConnection, call_id: int, value: int) -> None:
    server.send_response(call_id, Ok(SPEC.encode_return("get", value)))
    driver.receive_data(server.data_to_send(), 0.0)


def emit(driver: ClientDriver, server: ServerConnection, n: int) -> EventDelivered:
    payload = encode(Incremented(to=n, from_=0), CounterEvent)
    server.send_event(TOPIC, payload)
    driver.receive_data(server.data_to_send(), 0.0)
    return EventDelivered(TOPIC, payload)


def items(channel: Any) -> list[Any]:
    out = []
    while (item := channel.get()) is not None:
        out.append(item)
    return out


# -- connecting ------------------------------------------------------------------------------


def test_a_connection_opens_and_resolves_its_waiter() -> None:
    driver, _server = connected()
    assert driver.phase is ClientPhase.OPEN and driver.connected
    assert driver.address == "localhost:9000"


def test_calls_need_an_open_connection() -> None:
    driver = ClientDriver(Counter, Settings())
    with pytest.raises(ClientNotConnected, match="localhost:9000"):
        driver.start_call("get", (), Future(), 0.0)
    driver.new_connection(Future())  # connecting is not open either
    with pytest.raises(ClientNotConnected):
        driver.start_call("get", (), Future(), 0.0)


def test_without_a_connection_there_is_nothing_to_read_write_or_wait_for() -> None:
    driver = ClientDriver(Counter, Settings())
    assert driver.receive_data(b"x", 0.0) is False
    assert driver.handle_timer(0.0) is False
    assert driver.data_to_send() == b""
    assert driver.get_timer() is None


def test_a_refused_handshake_fails_the_opened_waiter_with_connection_refused() -> None:
    driver = ClientDriver(Counter, Settings())
    opened: Future[Any] = Future()
    driver.new_connection(opened)
    server = ServerConnection()
    server.receive_data(driver.data_to_send())
    drain(server)
    server.refuse(503, "busy")
    assert driver.receive_data(server.data_to_send(), 0.0) is False
    error = opened.exception()
    assert isinstance(error, ConnectionRefused) and error.status_code == 503


@pytest.mark.parametrize(
    "error",
    [ConnectionRefusedError(111, "Connection refused"), socket.gaierror(-2, "Name not known"),
     OSError(101, "Network is unreachable")],
    ids=["refused", "dns", "unreachable"],
)
def test_connect_failed_maps_os_errors_to_connect_error_with_the_address(error: OSError) -> None:
    driver = ClientDriver(Counter, Settings())
    driver.new_connection(Future())
    mapped = driver.connect_failed(error)
    assert isinstance(mapped, ConnectError) and isinstance(mapped, OSError)
    assert mapped.address == "localhost:9000" and "localhost:9000" in str(mapped)
    assert mapped.cause is error and mapped.errno == error.errno
    assert driver.phase is ClientPhase.LOST and driver.core is None


def test_connect_failed_maps_a_timeout_to_connect_error_with_the_connect_timeout() -> None:
    driver = ClientDriver(Counter, Settings(connect_timeout=2.5))
    driver.new_connection(Future())
    mapped = driver.connect_failed(TimeoutError())
    assert isinstance(mapped, ConnectError)
    assert mapped.address == "localhost:9000" and "2.5 s" in str(mapped)


@pytest.mark.parametrize(
    "error", [ConnectionRefused(403, "no"), ConnectError("elsewhere:1", "x"), CallTimeout("t")],
    ids=["refused", "connect-error", "hardlight-timeout"],
)
def test_connect_failed_passes_hardlight_errors_through(error: HardLightError) -> None:
    driver = ClientDriver(Counter, Settings())
    driver.new_connection(Future())
    assert driver.connect_failed(error) is error


@pytest.mark.parametrize("error", [NameError("typo in my code"), TypeError("bad"), KeyError("k")])
def test_connect_failed_does_not_dress_a_programming_error_as_a_network_failure(
    error: Exception,
) -> None:
    driver = ClientDriver(Counter, Settings())
    driver.new_connection(Future())
    assert driver.connect_failed(error) is error
    assert driver.phase is ClientPhase.LOST  # the connection attempt is over all the same


def test_connect_failed_after_a_disconnect_stays_idle() -> None:
    driver = ClientDriver(Counter, Settings(reconnect=ReconnectPolicy()))
    driver.new_connection(Future())
    driver.disconnect()
    driver.connect_failed(OSError("x"))
    assert driver.phase is ClientPhase.IDLE and not driver.should_reconnect


# -- calls and the one timer -------------------------------------------------------------------


def test_a_call_resolves_its_waiter_with_the_decoded_value() -> None:
    driver, server = connected()
    call_id, waiter = call(driver, server)
    assert driver.calls_pending == 1
    answer(driver, server, call_id, 41)
    assert waiter.result() == 41
    assert driver.calls_pending == 0


def test_call_timeout_fires_at_the_deadline_not_before() -> None:
    driver, server = connected()
    call_id, waiter = call(driver, server, now=10.0, timeout=2.0)
    assert driver.get_timer() == 12.0
    assert driver.handle_timer(11.999) is True
    assert not waiter.done()
    assert driver.handle_timer(12.0) is True
    error = waiter.exception()
    assert isinstance(error, CallTimeout) and isinstance(error, TimeoutError)
    assert "get" in str(error) and "localhost:9000" in str(error) and "2.0 s" in str(error)
    assert driver.connected and driver.calls_pending == 0  # the connection stays open
    # the id stays reserved until the late answer, which is dropped
    other, _ = call(driver, server)
    assert other != call_id
    answer(driver, server, call_id, 1)
    assert isinstance(waiter.exception(), CallTimeout)
    assert driver.core is not None and driver.core.connection.ignored_messages == 1


def test_the_configured_call_timeout_applies_when_none_is_given() -> None:
    driver, server = connected(call_timeout=4.0)
    _, waiter = call(driver, server, now=1.0)
    assert driver.get_timer() == 5.0
    driver.handle_timer(5.0)
    assert isinstance(waiter.exception(), CallTimeout)


def test_no_call_timeout_leaves_only_the_connections_deadline() -> None:
    driver, server = connected(call_timeout=None, limits=Limits(idle_timeout=60.0))
    _, waiter = call(driver, server, now=1.0)
    assert driver.get_timer() == 60.0
    driver.handle_timer(59.0)
    assert not waiter.done()


def test_get_timer_is_the_earliest_of_the_connection_and_the_calls() -> None:
    driver, server = connected(limits=Limits(idle_timeout=60.0))
    assert driver.get_timer() == 60.0  # keep-alive only
    call(driver, server, now=0.0, timeout=100.0)
    assert driver.get_timer() == 60.0  # the connection's deadline comes first
    _, soon = call(driver, server, now=0.0, timeout=7.0)
    _, later = call(driver, server, now=0.0, timeout=9.0)
    assert driver.get_timer() == 7.0
    driver.handle_timer(7.0)
    assert soon.done() and not later.done()
    assert driver.get_timer() == 9.0
    driver.handle_timer(9.0)
    assert later.done()
    assert driver.get_timer() == 60.0


def test_the_connections_deadline_acts_through_handle_timer() -> None:
    driver, server = connected(limits=Limits(idle_timeout=5.0), call_timeout=None)
    _, waiter = call(driver, server)
    driver.handle_timer(5.0)  # keep-alive ping
    server.receive_data(driver.data_to_send())
    assert driver.handle_timer(10.0) is False  # no pong read: the connection is over
    assert isinstance(waiter.exception(), ClientNotConnected)


def test_a_cancelled_calls_answer_is_dropped() -> None:
    driver, server = connected()
    call_id, waiter = call(driver, server)
    driver.cancel_call(call_id, Future())  # not its waiter: nothing happens
    assert driver.calls_pending == 1
    driver.cancel_call(call_id, waiter)
    assert driver.calls_pending == 0
    answer(driver, server, call_id, 5)
    assert not waiter.done()


def test_a_waiter_done_elsewhere_is_left_alone() -> None:
    driver, server = connected()
    call_id, waiter = call(driver, server)
    waiter.cancel()  # e.g. the awaiting task was cancelled before cancel_call ran
    answer(driver, server, call_id, 5)  # set_result on it would raise InvalidStateError
    assert waiter.cancelled()


# -- subscribers -----------------------------------------------------------------------------


def test_every_subscriber_gets_every_event() -> None:
    driver, server = connected()
    first, second = driver.subscribe(), driver.subscribe()
    sent = [emit(driver, server, n) for n in range(3)]
    assert items(first) == sent and items(second) == sent


def test_events_before_the_first_subscriber_wait_for_it_and_only_it() -> None:
    driver, server = connected()
    early = [emit(driver, server, n) for n in range(2)]
    first = driver.subscribe()
    second = driver.subscribe()
    late = emit(driver, server, 9)
    assert items(first) == [*early, late]
    assert items(second) == [late]


def test_unsubscribed_and_closed_channels() -> None:
    driver, server = connected()
    first, second = driver.subscribe(), driver.subscribe()
    driver.unsubscribe(first)
    assert first.exhausted
    event = emit(driver, server, 1)
    assert items(second) == [event]
    driver.close_subscriptions()
    assert second.exhausted
    # with nobody subscribed, events wait in the backlog for the next subscriber
    later = emit(driver, server, 2)
    assert items(driver.subscribe()) == [later]


def test_a_full_subscriber_drops_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_module, "EVENT_QUEUE_SIZE", 2)
    driver, server = connected()
    slow, fast = driver.subscribe(), driver.subscribe()
    sent = [emit(driver, server, 0), emit(driver, server, 1)]
    items(fast)
    emit(driver, server, 2)
    assert items(slow) == sent  # the newest is dropped, not the oldest
    assert driver.events_dropped == 1 and slow.dropped == 1


def test_a_full_backlog_drops_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_module, "EVENT_QUEUE_SIZE", 2)
    driver, server = connected()
    sent = [emit(driver, server, n) for n in range(3)]
    assert driver.events_dropped == 1
    assert items(driver.subscribe()) == sent[:2]


def test_subscribers_are_woken_on_put() -> None:
    driver, server = connected()
    channel = driver.subscribe()
    wakes: list[int] = []
    channel.on_put = lambda: wakes.append(1)
    emit(driver, server, 1)
    assert wakes == [1]


# -- drops, state and reconnecting -------------------------------------------------------------


def test_a_drop_fails_pending_calls_and_keeps_the_state() -> None:
    driver, server = connected(reconnect=ReconnectPolicy())
    server.send_state_change([StateUpdate(0, encode(7, u32))])
    driver.receive_data(server.data_to_send(), 0.0)
    assert driver.state.counter == 7
    _, waiter = call(driver, server)
    driver.connection_lost(1.0, ConnectionResetError())
    assert isinstance(waiter.exception(), ClientNotConnected)
    assert driver.phase is ClientPhase.LOST and driver.should_reconnect
    assert driver.state.counter == 7  # kept after the drop
    assert driver.get_timer() is None  # no call deadline left, the connection is over
    driver.new_connection(Future())
    assert driver.state.counter == 0  # a new connection starts from the default
    driver.connect_failed(ConnectionRefusedError())
    assert driver.state.counter == 7  # a failed attempt leaves the last known state


def test_a_drop_without_a_policy_does_not_reconnect() -> None:
    driver, _server = connected()
    driver.connection_lost(1.0)
    assert driver.phase is ClientPhase.LOST and not driver.should_reconnect
    assert list(driver.reconnect_delays()) == []


def test_a_drop_during_the_handshake_fails_the_opened_waiter() -> None:
    driver = ClientDriver(Counter, Settings())
    opened: Future[Any] = Future()
    driver.new_connection(opened)
    driver.connection_lost(0.0)
    assert isinstance(opened.exception(), ClientNotConnected)
    assert driver.phase is ClientPhase.LOST


def test_disconnect_closes_and_never_reconnects() -> None:
    driver, server = connected(reconnect=ReconnectPolicy())
    _, waiter = call(driver, server)
    driver.disconnect()
    assert driver.phase is ClientPhase.IDLE and not driver.should_reconnect
    server.receive_data(driver.data_to_send())  # the close frame
    assert driver.receive_data(server.data_to_send(), 0.0) is False  # the echo: over
    assert isinstance(waiter.exception(), ClientNotConnected)
    driver.disconnected()
    driver.connection_lost(0.0)  # the socket going away afterwards changes nothing
    assert driver.phase is ClientPhase.IDLE
    assert list(driver.reconnect_delays()) == []


def test_reconnect_delays_back_off_and_give_up(caplog: pytest.LogCaptureFixture) -> None:
    policy = ReconnectPolicy(initial_delay=0.1, factor=2.0, max_delay=0.3, max_attempts=4)
    driver, _server = connected(reconnect=policy)
    driver.connection_lost(0.0)
    waits = []
    with caplog.at_level(logging.INFO, logger="hardlight"):
        for delay in driver.reconnect_delays():
            waits.append(delay)
            driver.new_connection(Future())
            error = driver.connect_failed(ConnectionRefusedError())
            driver.reconnect_failed(error)
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert "giving up" in caplog.text and "after 4 attempts" in caplog.text


def test_reconnect_delays_stop_once_connected() -> None:
    driver, _server = connected(reconnect=ReconnectPolicy(max_attempts=5))
    driver.connection_lost(0.0)
    waits = []
    for n, delay in enumerate(driver.reconnect_delays()):
        waits.append(delay)
        if n == 0:
            driver.new_connection(Future())
            driver.connect_failed(OSError("still down"))
        else:
            handshake(driver)
    assert len(waits) == 2 and driver.connected


def test_reconnect_delays_stop_when_the_user_disconnects() -> None:
    driver, _server = connected(reconnect=ReconnectPolicy(max_attempts=5))
    driver.connection_lost(0.0)
    delays = driver.reconnect_delays()
    next(delays)
    driver.disconnect()
    assert list(delays) == []


def test_max_attempts_zero_reconnects_forever() -> None:
    driver, _server = connected(reconnect=ReconnectPolicy(max_attempts=0, max_delay=0.1))
    driver.connection_lost(0.0)
    assert len(list(itertools.islice(driver.reconnect_delays(), 1500))) == 1500
