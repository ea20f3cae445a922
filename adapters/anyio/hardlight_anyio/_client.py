"""The anyio client (asyncio and trio backends): reader, writer and timer tasks around a
``ClientCore``.

A connection's tasks live in their own task group, run by a task of the backend itself
(an asyncio task, or a trio system task), so clients can be connected and disconnected
in any order from any task. Every decision (call ids, error mapping, state mirror) is
the core's.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream

from hardlight_core import (
    CallOutcome,
    CallTimeout,
    CertificateMismatch,
    ClientClosed,
    ClientConfig,
    ClientCore,
    ClientNotConnected,
    ClientOpened,
    EventDelivered,
    HardLightError,
    RpcError,
    ServiceSpec,
)

from ._server import _spawn_detached

__all__ = ["Client", "client_class"]

log = logging.getLogger("hardlight")

EVENT_QUEUE_SIZE = 10_000
READ_SIZE = 65536
S = TypeVar("S")


class _Waiter:
    """One pending call (or the handshake): an event and its outcome."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        if not self.done.is_set():
            self.value, self.error = value, error
            self.done.set()


class _Link:
    """One open connection: its core, stream and the events its tasks wait on."""

    def __init__(self, core: ClientCore, stream: anyio.abc.ByteStream) -> None:
        self.core = core
        self.stream = stream
        self.wake = anyio.Event()  # the writer's: output is queued
        self.timer_wake = anyio.Event()  # the timer's: the deadline moved earlier
        self.armed = math.inf
        self.open = True  # False once the reader saw the end
        self.tg: anyio.abc.TaskGroup | None = None
        self.done = anyio.Event()  # the task group ended

    def flush_soon(self) -> None:
        self.wake.set()

    def rearm(self) -> None:
        deadline = self.core.get_timer()
        if deadline is not None and deadline < self.armed:
            self.timer_wake.set()


class Client:
    """A HardLight client of one service on anyio.

    ``Client(Counter, config)`` has one coroutine method per service method
    (``await client.increment(1)``); see :func:`client_class` for a typed class.
    """

    def __init__(self, service: type[Any], config: ClientConfig | None = None) -> None:
        self.service = service
        self.config = config or ClientConfig()
        self.spec = ServiceSpec.of(service)
        self._link: _Link | None = None
        self._pending: dict[int, _Waiter] = {}
        self._opened: _Waiter | None = None
        self._send_events, self._receive_events = anyio.create_memory_object_stream[
            EventDelivered | None
        ](EVENT_QUEUE_SIZE)
        #: events lost because nobody read them fast enough
        self.events_dropped = 0
        self._state: Any = None
        self._closing = False
        for method in self.spec.methods:
            if not hasattr(type(self), method.name):
                setattr(self, method.name, self._make_method(method.name))

    def _make_method(self, name: str) -> Any:
        async def method(*args: Any, timeout: float | None = None) -> Any:
            return await self.call(name, *args, timeout=timeout)

        method.__name__ = name
        return method

    # -- connection ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        link = self._link
        return (
            link is not None
            and link.open
            and self._opened is not None
            and self._opened.done.is_set()
            and self._opened.error is None
        )

    async def connect(self) -> None:
        """Open the connection (TLS, upgrade); raises on refusal or a certificate problem."""
        self._closing = False
        with anyio.fail_after(self.config.connect_timeout):
            await self._connect_once()

    async def _connect_once(self) -> None:
        config = self.config
        host, port = config.host_port
        core = ClientCore(
            self.service,
            f"{host}:{port}",
            compression_level=config.compression_level,
            limits=config.limits,
        )
        stream: anyio.abc.ByteStream = await anyio.connect_tcp(host, port)
        try:
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
            if raw is not None:
                with contextlib.suppress(OSError):
                    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not config.plaintext:
                stream = await TLSStream.wrap(
                    stream,
                    hostname=config.server_hostname,
                    ssl_context=config.tls.ssl_context(),
                    standard_compatible=False,
                )
                der = stream.extra(TLSAttribute.peer_certificate_binary, None)
                config.tls.check_peer(der)  # raises CertificateMismatch
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
        link = _Link(core, stream)
        self._link = link
        self._state = core.state
        self._opened = opened = _Waiter()
        core.handle_timer(anyio.current_time())  # starts the handshake clock
        started = anyio.Event()
        _spawn_detached(self._run_link, link, started)
        await started.wait()
        link.flush_soon()  # the upgrade request
        try:
            await opened.done.wait()
        except BaseException:  # timed out or cancelled during the handshake
            await self._close_link(link)
            raise
        if opened.error is not None:
            await self._close_link(link)
            raise opened.error

    async def _run_link(self, link: _Link, started: anyio.Event) -> None:
        try:
            async with anyio.create_task_group() as tg:
                link.tg = tg
                tg.start_soon(self._writer, link)
                tg.start_soon(self._timer, link)
                tg.start_soon(self._reader, link)
                started.set()
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException:
            log.exception("client connection tasks failed")
        finally:
            started.set()
            link.open = False
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(link.stream)
            link.done.set()

    async def _close_link(self, link: _Link) -> None:
        """End ``link``'s tasks and close its socket (bounded)."""
        if link.tg is not None:
            link.tg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
            await link.done.wait()
        if self._link is link:
            self._state = link.core.state

    async def disconnect(self) -> None:
        """Close the connection (close handshake, bounded wait)."""
        self._closing = True
        link = self._link
        if link is not None:
            if link.open:
                with contextlib.suppress(HardLightError):
                    link.core.close()
                link.flush_soon()
                with anyio.move_on_after(1.0):
                    while link.open:
                        await anyio.sleep(0.01)
            await self._close_link(link)
        self._fail_all(ClientNotConnected("client disconnected"))

    async def __aenter__(self: S) -> S:
        await self.connect()  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    # -- calls -------------------------------------------------------------------------------

    async def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``method`` with ``args``; returns its decoded result or raises an RpcError."""
        link = self._link
        if link is None or not link.open:
            raise ClientNotConnected("not connected")
        core = link.core
        call_id = core.start_call(method, args)
        waiter = _Waiter()
        self._pending[call_id] = waiter
        link.flush_soon()  # every call made in this scheduling round leaves in one write
        timeout = self.config.call_timeout if timeout is None else timeout
        try:
            with anyio.fail_after(timeout):
                await waiter.done.wait()
        except TimeoutError:
            if self._pending.pop(call_id, None) is waiter:
                core.abandon_call(call_id)
            if waiter.done.is_set():  # answered in the same instant: keep the answer
                return self._result(waiter)
            raise CallTimeout(f"{method}: no answer within {timeout} s") from None
        except anyio.get_cancelled_exc_class():
            if self._pending.pop(call_id, None) is waiter:
                core.abandon_call(call_id)
            raise
        return self._result(waiter)

    @staticmethod
    def _result(waiter: _Waiter) -> Any:
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    def state(self) -> Any:
        """The mirror of this connection's server-side state."""
        link = self._link
        return link.core.state if link is not None else self._state

    async def subscribe(self) -> AsyncIterator[EventDelivered]:
        """Events the server sends to this connection, as they arrive (one shared stream)."""
        async for event in self._receive_events:
            if event is None:
                return
            yield event

    # -- connection tasks ----------------------------------------------------------------------

    async def _reader(self, link: _Link) -> None:
        core = link.core
        while True:
            try:
                data = await link.stream.receive(READ_SIZE)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ):
                data = b""
            except Exception as exc:  # TLS errors
                log.debug("client read failed: %r", exc)
                data = b""
            outcomes = core.receive_data(data, anyio.current_time())
            self._handle(outcomes)
            link.flush_soon()
            link.rearm()
            if not data or any(isinstance(o, ClientClosed) for o in outcomes):
                break
        await self._lost(link)

    async def _writer(self, link: _Link) -> None:
        core = link.core
        while True:
            await link.wake.wait()
            link.wake = anyio.Event()
            data = core.data_to_send()
            if data:
                try:
                    await link.stream.send(data)
                except Exception as exc:
                    log.debug("client write failed: %r", exc)
                    with contextlib.suppress(Exception):
                        self._handle(core.receive_data(b"", anyio.current_time()))
                    await self._lost(link)
                    return
            link.rearm()

    async def _timer(self, link: _Link) -> None:
        core = link.core
        while True:
            link.timer_wake = anyio.Event()
            deadline = core.get_timer()
            link.armed = math.inf if deadline is None else deadline
            with anyio.move_on_after(link.armed - anyio.current_time()):
                await link.timer_wake.wait()
                continue
            self._handle(core.handle_timer(anyio.current_time()))
            link.flush_soon()

    async def _lost(self, link: _Link) -> None:
        """The connection ended: fail what is pending, maybe reconnect, end the tasks."""
        if not link.open:
            return
        link.open = False
        if self._link is link:
            self._state = link.core.state
        if self._opened is not None:
            self._opened.resolve(error=ClientNotConnected("connection lost during the handshake"))
        self._fail_all(ClientNotConnected("connection lost"))
        if self.config.reconnect is not None and not self._closing and self._link is link:
            _spawn_detached(self._reconnect, link)
        if link.tg is not None:
            link.tg.cancel_scope.cancel()

    async def _reconnect(self, old: _Link) -> None:
        """Reconnect with the configured backoff (pending calls were already failed)."""
        try:
            policy = self.config.reconnect
            assert policy is not None
            with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                await old.done.wait()
            for delay in policy.delays():
                await anyio.sleep(delay)
                if self._closing or self._link is not old:
                    return
                try:
                    await self.connect()
                except (OSError, HardLightError, TimeoutError) as exc:
                    log.info("reconnect failed: %s", exc)
                    continue
                log.info("reconnected")
                return
            log.warning("giving up reconnecting after %d attempts", len(policy.delays()))
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException:
            log.exception("reconnecting failed")

    def _handle(self, outcomes: list[Any]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, CallOutcome):
                waiter = self._pending.pop(outcome.call_id, None)
                if waiter is not None:
                    waiter.resolve(outcome.value, outcome.error)
            elif isinstance(outcome, EventDelivered):
                try:
                    self._send_events.send_nowait(outcome)
                except anyio.WouldBlock:
                    self.events_dropped += 1
            elif isinstance(outcome, ClientOpened):
                if self._opened is not None:
                    self._opened.resolve()
            elif isinstance(outcome, ClientClosed):
                error = outcome.exception()
                if self._opened is not None:
                    self._opened.resolve(error=error)
                self._fail_all(ClientNotConnected(str(error)))

    def _fail_all(self, error: RpcError) -> None:
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.resolve(error=type(error)(str(error)))


def client_class(service: type[S]) -> type[Any]:
    """A client class for ``service`` whose methods carry the service's signatures."""
    return type(f"{service.__name__}Client", (Client,), {"__init__": _bound_init(service)})


def _bound_init(service: type[Any]) -> Any:
    def __init__(self: Client, config: ClientConfig | None = None) -> None:
        Client.__init__(self, service, config)

    return __init__
