"""The anyio client (asyncio and trio backends): a reader task around ``ClientCore``.

The connection's reader, writer and timer tasks live in their own task group, run by
a task of the backend itself (an asyncio task, or a trio system task), so clients can
be connected and disconnected in any order from any task.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import sniffio
from anyio.streams.tls import TLSAttribute

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

__all__ = ["Client", "client_class"]

log = logging.getLogger("hardlight")

EVENT_QUEUE_SIZE = 10_000
READ_SIZE = 65536


class _Waiter:
    """One pending call: an event and its outcome."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        if not self.done.is_set():
            self.value, self.error = value, error
            self.done.set()


class Client:
    """A HardLight client of one service on anyio (``await client.increment(1)``)."""

    def __init__(self, service: type[Any], config: ClientConfig | None = None) -> None:
        self.service = service
        self.config = config or ClientConfig()
        self.spec = ServiceSpec.of(service)
        self._core: ClientCore | None = None
        self._stream: anyio.abc.ByteStream | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._done: anyio.Event | None = None
        self._wake: anyio.Event | None = None
        self._pending: dict[int, _Waiter] = {}
        self._opened: _Waiter | None = None
        self._send_events, self._receive_events = anyio.create_memory_object_stream[
            "EventDelivered | None"
        ](EVENT_QUEUE_SIZE)
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

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        return (
            self._stream is not None
            and self._opened is not None
            and (self._opened.done.is_set() and self._opened.error is None)
        )

    async def connect(self) -> None:
        """Open the connection (TLS, upgrade); raises on refusal or a certificate problem."""
        self._closing = False
        host, port = self.config.host_port
        core = ClientCore(
            self.service,
            f"{host}:{port}",
            compression_level=self.config.compression_level,
            limits=self.config.limits,
        )
        with anyio.fail_after(self.config.connect_timeout):
            if self.config.plaintext:
                stream: anyio.abc.ByteStream = await anyio.connect_tcp(host, port)
            else:
                stream = await anyio.connect_tcp(
                    host,
                    port,
                    ssl_context=self.config.tls.ssl_context(),
                    tls_hostname=self.config.server_hostname,
                    tls_standard_compatible=False,
                )
                der = stream.extra(TLSAttribute.peer_certificate_binary, None)
                try:
                    self.config.tls.check_peer(der)
                except CertificateMismatch:
                    await anyio.aclose_forcefully(stream)
                    raise
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._core, self._stream = core, stream
        self._opened = _Waiter()
        self._wake = anyio.Event()
        started = anyio.Event()
        self._done = anyio.Event()
        done = self._done

        async def runner() -> None:
            try:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    tg.start_soon(self._reader, core, stream)
                    tg.start_soon(self._writer, core, stream)
                    tg.start_soon(self._timers, core)
                    started.set()
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException:
                log.exception("client connection tasks failed")
            finally:
                done.set()

        _spawn_detached(runner)
        await started.wait()
        self._wake.set()
        try:
            with anyio.fail_after(self.config.connect_timeout):
                await self._opened.done.wait()
        except TimeoutError:
            await self._close_tasks()
            raise ClientNotConnected("handshake timed out") from None
        if self._opened.error is not None:
            await self._close_tasks()
            raise self._opened.error

    async def disconnect(self) -> None:
        """Close the connection (close handshake, bounded wait)."""
        self._closing = True
        core = self._core
        if core is not None and self._wake is not None:
            with contextlib.suppress(HardLightError):
                core.close()
            self._wake.set()
            with anyio.move_on_after(1.0):
                while self._stream is not None:
                    await anyio.sleep(0.01)
        await self._close_tasks()
        self._fail_all(ClientNotConnected("client disconnected"))

    async def _close_tasks(self) -> None:
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            if self._done is not None:
                with anyio.move_on_after(5):
                    await self._done.wait()
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await anyio.aclose_forcefully(stream)

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``method``; returns its decoded result or raises an RpcError."""
        core = self._core
        if core is None or self._stream is None or self._wake is None:
            raise ClientNotConnected("not connected")
        call_id = core.start_call(method, args)
        waiter = _Waiter()
        self._pending[call_id] = waiter
        self._wake.set()
        timeout = self.config.call_timeout if timeout is None else timeout
        try:
            with anyio.fail_after(timeout):
                await waiter.done.wait()
        except TimeoutError:
            if self._pending.pop(call_id, None) is waiter:
                core.abandon_call(call_id)
            raise CallTimeout(f"{method}: no answer within {timeout} s") from None
        except anyio.get_cancelled_exc_class():
            if self._pending.pop(call_id, None) is waiter:
                core.abandon_call(call_id)
            raise
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    def state(self) -> Any:
        """The mirror of this connection's server-side state."""
        return self._core.state if self._core is not None else self._state

    async def subscribe(self) -> AsyncIterator[EventDelivered]:
        """Events the server sends to this connection, as they arrive."""
        async for event in self._receive_events:
            if event is None:
                return
            yield event

    async def _reader(self, core: ClientCore, stream: anyio.abc.ByteStream) -> None:
        while True:
            try:
                data = await stream.receive(READ_SIZE)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ):
                data = b""
            except Exception as exc:
                log.debug("client read failed: %s", exc)
                data = b""
            outcomes = core.receive_data(data, anyio.current_time())
            self._handle(outcomes)
            if self._wake is not None:
                self._wake.set()
            if not data or any(isinstance(o, ClientClosed) for o in outcomes):
                break
        self._state = core.state
        if self._stream is stream:
            self._stream = None
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(stream)
        self._fail_all(ClientNotConnected("connection lost"))
        if self.config.reconnect is not None and not self._closing:
            _spawn_detached(self._reconnect)

    async def _reconnect(self) -> None:
        """Reconnect with the configured backoff (pending calls were already failed)."""
        policy = self.config.reconnect
        assert policy is not None
        await self._close_tasks()
        for delay in policy.delays():
            await anyio.sleep(delay)
            if self._closing:
                return
            try:
                await self.connect()
            except (OSError, HardLightError, TimeoutError) as exc:
                log.info("reconnect failed: %s", exc)
                continue
            log.info("reconnected")
            return
        log.warning("giving up reconnecting")

    async def _writer(self, core: ClientCore, stream: anyio.abc.ByteStream) -> None:
        while True:
            assert self._wake is not None
            await self._wake.wait()
            self._wake = anyio.Event()
            data = core.data_to_send()
            if data:
                try:
                    await stream.send(data)
                except Exception as exc:
                    log.debug("client write failed: %s", exc)
                    self._handle(core.receive_data(b"", anyio.current_time()))
                    return

    async def _timers(self, core: ClientCore) -> None:
        while True:
            deadline = core.get_timer()
            now = anyio.current_time()
            await anyio.sleep(max(0.0, min((deadline or now + 1.0) - now, 1.0)))
            self._handle(core.handle_timer(anyio.current_time()))
            if self._wake is not None:
                self._wake.set()

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


_background: set[Any] = set()


def _spawn_detached(runner: Any) -> None:
    """Run ``runner()`` as a task of the running backend, outside the caller's scopes."""
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(runner)
    else:
        import asyncio

        task = asyncio.get_running_loop().create_task(runner())
        _background.add(task)  # keep a reference until it ends
        task.add_done_callback(_background.discard)


def client_class(service: type[Any]) -> type[Any]:
    """A client class for ``service``."""

    def __init__(self: Client, config: ClientConfig | None = None) -> None:
        Client.__init__(self, service, config)

    return type(f"{service.__name__}Client", (Client,), {"__init__": __init__})
