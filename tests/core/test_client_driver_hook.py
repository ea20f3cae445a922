"""The client driver's reconnect hook gate, the upgrade's path and headers, and the typed
proxies: no sockets (a bare ServerConnection answers, futures play the waiters)."""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
from hl_pair import drain

from hardlight_apps.counter import Counter
from hardlight_core import CallTimeout, ClientEncodeError, ClientNotConnected, Ok, encode, u32
from hardlight_core._client_driver import (
    ClientDriver,
    proxy_client,
    service_proxy,
    with_timeout,
)
from hardlight_core._config import ReconnectPolicy
from hardlight_core._connection import ServerConnection
from hardlight_core._events import CallReceived, HandshakeRequested
from hardlight_core._limits import Limits
from hardlight_core._service import ServiceSpec

SPEC = ServiceSpec.of(Counter)


@dataclass(frozen=True)
class Settings:
    host_port: tuple[str, int] = ("localhost", 9000)
    compression_level: int = 6
    limits: Limits | None = None
    call_timeout: float | None = 30.0
    connect_timeout: float = 10.0
    reconnect: ReconnectPolicy | None = None
    path: str = "/"
    upgrade_headers: tuple[tuple[bytes, bytes], ...] = ()


def open_connection(driver: ClientDriver) -> tuple[ServerConnection, list[Any]]:
    opened: Future[Any] = Future()
    driver.new_connection(opened)
    server = ServerConnection()
    server.receive_data(driver.data_to_send(), 0.0)
    events = drain(server)
    server.accept()
    assert driver.receive_data(server.data_to_send(), 0.0)
    assert opened.done() and opened.exception() is None
    return server, events


def reconnected(**settings: Any) -> tuple[ClientDriver, ServerConnection]:
    """A driver with a hook that dropped and reconnected: the hook is now due."""
    driver = ClientDriver(Counter, Settings(reconnect=ReconnectPolicy(), **settings))
    driver.reconnect_hook = object()  # the adapter's; the driver only sees that there is one
    open_connection(driver)
    assert not driver.hook_pending  # the first connect is no reconnect
    driver.connection_lost(0.0)
    server: ServerConnection | None = None
    for _delay in driver.reconnect_delays():
        server, _ = open_connection(driver)
    assert server is not None and driver.connected
    return driver, server


def sent_calls(driver: ClientDriver, server: ServerConnection) -> list[str]:
    data = driver.data_to_send()
    if data:  # (b"" would be EOF)
        server.receive_data(data)
    calls = [e for e in drain(server) if isinstance(e, CallReceived)]
    return [SPEC.decode_call(c.internal)[0].name for c in calls]


def answer(driver: ClientDriver, server: ServerConnection, call_id: int, value: int) -> None:
    server.send_response(call_id, Ok(encode(value, u32)))
    driver.receive_data(server.data_to_send(), 0.0)


def test_the_upgrade_carries_the_path_and_the_extra_headers() -> None:
    driver = ClientDriver(
        Counter,
        Settings(path="/chat?room=1", upgrade_headers=((b"Authorization", b"Bearer t"),)),
    )
    _, events = open_connection(driver)
    (request,) = [e for e in events if isinstance(e, HandshakeRequested)]
    assert request.path == "/chat?room=1"
    assert (b"authorization", b"Bearer t") in [(k.lower(), v) for k, v in request.headers]


def test_calls_from_others_are_held_while_the_hook_runs_then_sent_in_order() -> None:
    driver, server = reconnected()
    assert driver.hook_pending
    outside: list[Future[Any]] = [Future(), Future()]
    assert driver.start_call("get", (), outside[0], 0.0) == -1
    assert driver.start_call("increment", (2,), outside[1], 0.0) == -1
    assert sent_calls(driver, server) == []  # held: nothing went out
    assert driver.calls_pending == 2

    token = driver.enter_hook()
    mine: Future[Any] = Future()
    hook_id = driver.start_call("new_counter", (), mine, 0.0)
    assert hook_id >= 0 and sent_calls(driver, server) == ["new_counter"]
    driver.leave_hook(token)
    assert not driver.hook_pending
    assert sent_calls(driver, server) == ["get", "increment"]  # the held ones, in order
    later: Future[Any] = Future()
    assert driver.start_call("get", (), later, 0.0) >= 0  # the gate is open


def test_the_hook_context_passes_in_tasks_it_starts_but_not_in_other_contexts() -> None:
    driver, _server = reconnected()
    token = driver.enter_hook()
    copied = contextvars.copy_context()  # what a task started by the hook gets
    driver.leave_hook(token)
    driver._gated = True  # as if the hook still ran, seen from outside its context
    waiter: Future[Any] = Future()
    assert copied.run(driver.start_call, "get", (), waiter, 0.0) >= 0
    other: Future[Any] = Future()
    assert contextvars.Context().run(driver.start_call, "get", (), other, 0.0) == -1


def test_a_held_call_times_out_on_its_own_deadline() -> None:
    driver, server = reconnected()
    waiter: Future[Any] = Future()
    driver.start_call("get", (), waiter, 0.0, timeout=1.0)
    assert driver.get_timer() == pytest.approx(1.0)
    driver.handle_timer(0.5)
    assert not waiter.done()
    driver.handle_timer(1.0)
    assert isinstance(waiter.exception(), CallTimeout)
    assert "reconnect hook" in str(waiter.exception())
    driver.leave_hook()
    assert sent_calls(driver, server) == []  # the timed-out call is never sent


def test_held_calls_fail_when_the_connection_drops_and_can_be_cancelled() -> None:
    driver, _server = reconnected()
    kept: Future[Any] = Future()
    cancelled: Future[Any] = Future()
    driver.start_call("get", (), kept, 0.0)
    call_id = driver.start_call("get", (), cancelled, 0.0)
    driver.cancel_call(call_id, cancelled)
    assert driver.calls_pending == 1
    driver.connection_lost(0.0)
    assert isinstance(kept.exception(), ClientNotConnected)
    assert not cancelled.done() and not driver.hook_pending


def test_a_held_call_with_bad_arguments_fails_at_once() -> None:
    driver, _server = reconnected()
    with pytest.raises(ClientEncodeError):
        driver.start_call("increment", ("two",), Future(), 0.0)
    assert driver.calls_pending == 0


def test_a_held_call_started_by_the_gate_resolves_and_cancels_by_its_waiter() -> None:
    driver, server = reconnected()
    waiter: Future[Any] = Future()
    cancelled: Future[Any] = Future()
    driver.start_call("get", (), waiter, 0.0)
    driver.start_call("get", (), cancelled, 0.0)
    driver.leave_hook()
    server.receive_data(driver.data_to_send())
    ids = [e.call_id for e in drain(server) if isinstance(e, CallReceived)]
    driver.cancel_call(-1, cancelled)  # the id the caller got while it was held
    for call_id in ids:
        answer(driver, server, call_id, 7)
    assert waiter.result() == 7
    assert not cancelled.done()  # its late answer was dropped


def test_without_a_hook_a_reconnect_holds_nothing() -> None:
    driver = ClientDriver(Counter, Settings(reconnect=ReconnectPolicy()))
    open_connection(driver)
    driver.connection_lost(0.0)
    for _delay in driver.reconnect_delays():
        _server, _ = open_connection(driver)
    assert not driver.hook_pending
    assert driver.start_call("get", (), Future(), 0.0) >= 0


def test_a_manual_reconnect_does_not_hold_calls() -> None:
    driver = ClientDriver(Counter, Settings())
    driver.reconnect_hook = object()
    open_connection(driver)
    driver.connection_lost(0.0)
    open_connection(driver)  # the user connects again: no automatic reconnect, no hook
    assert not driver.hook_pending


def test_disconnect_fails_the_held_calls() -> None:
    driver, _server = reconnected()
    waiter: Future[Any] = Future()
    driver.start_call("get", (), waiter, 0.0)
    driver.disconnect()
    assert isinstance(waiter.exception(), ClientNotConnected)


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], float | None]] = []

    async def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        self.calls.append((method, args, timeout))
        return len(self.calls)


def test_a_proxy_is_the_service_and_forwards_positional_keyword_and_timeout() -> None:
    client = FakeClient()
    proxy = service_proxy(Counter, client)
    assert isinstance(proxy, Counter)
    assert proxy_client(proxy) is client
    quick = with_timeout(proxy, 2.5)
    assert type(quick) is type(proxy) and proxy_client(quick) is client

    async def go() -> None:
        await proxy.increment(3)
        await proxy.increment(amount=4)
        await quick.get()

    asyncio.run(go())
    assert client.calls == [("increment", (3,), None), ("increment", (4,), None), ("get", (), 2.5)]
    with pytest.raises(TypeError):
        asyncio.run(proxy.increment(amount=1, extra=2))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        with_timeout(Counter(), 1.0)
    with pytest.raises(TypeError):
        proxy_client(client)


def test_a_blocking_proxy_calls_when_first_resumed_without_an_event_loop() -> None:
    class Blocking:
        def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
            return (method, args, timeout)

    proxy = service_proxy(Counter, Blocking(), blocking=True)
    coroutine = proxy.increment(5)
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)
    assert done.value.value == ("increment", (5,), None)


def test_calls_held_for_the_hook_are_bounded_by_the_wires_256() -> None:
    from hardlight_core import TooManyCallsInFlight

    driver, server = reconnected()
    assert driver.hook_pending  # the gate is up until the hook has run
    waiters: list[Future[Any]] = [Future() for _ in range(256)]
    for waiter in waiters:
        assert driver.start_call("get", (), waiter, 0.0) == -1  # held
    with pytest.raises(TooManyCallsInFlight):
        driver.start_call("get", (), Future(), 0.0)
    token = driver.enter_hook()
    driver.leave_hook(token)  # the hook ran: the held calls go out, all 256
    assert len(sent_calls(driver, server)) == 256
