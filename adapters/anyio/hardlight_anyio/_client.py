"""The anyio client (asyncio and trio backends): tasks feeding the core's ``ClientDriver``.

The driver decides everything; this module opens the stream, runs a reader, a writer
and a timer in a task group of its own (run by a task of the backend itself, an
asyncio task or a trio system task, so clients may be connected and disconnected in
any order from any task), and resolves waiters.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
import sniffio
from anyio.streams.tls import TLSAttribute

from hardlight_core import ClientCore, EventDelivered, HardLightError
from hardlight_core._client_driver import proxy_client
from hardlight_support import (
    CertificateMismatch,
    ChannelReader,
    ClientBase,
    ClientConfig,
    reconnect_with_backoff,
)

__all__ = ["Client", "ReconnectHook", "Subscription", "client_class", "client_of", "connect"]

log = logging.getLogger("hardlight")

S = TypeVar("S")
T = TypeVar("T")

#: ``async def hook(client) -> None``: runs after each automatic reconnect
ReconnectHook = Callable[["Client[Any]"], Awaitable[None]]

READ_SIZE = 65536


class _Waiter:
    """One pending call (or handshake): future-like, for the driver."""

    __slots__ = ("_done", "error", "value")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def done(self) -> bool:
        return self._done.is_set()

    def set_result(self, value: Any) -> None:
        self.value = value
        self._done.set()

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self._done.set()

    async def wait(self) -> Any:
        await self._done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class Subscription(ChannelReader[EventDelivered]):
    """Events the server sends to this connection (an async iterator; bounded). Every
    subscription gets every event; it ends when the client disconnects."""


class Client(ClientBase[S]):
    """A HardLight client of one service on anyio (``await client.increment(1)``,
    untyped; ``client.proxy`` has the same calls typed as the service)."""

    def __init__(self, service: type[S], config: ClientConfig | None = None) -> None:
        self._stream: anyio.abc.ByteStream | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._done: anyio.Event | None = None
        self._wake: anyio.Event | None = None
        self._reconnecting = False
        super().__init__(service, config)

    def on_reconnect(self, hook: ReconnectHook) -> ReconnectHook:
        """Run ``await hook(client)`` after each automatic reconnect, before any other caller's
        call is sent (calls made meanwhile wait until it returns). Re-subscribe there.
        One hook; returns it (a decorator)."""
        self._set_reconnect_hook(hook)
        return hook

    async def connect(self) -> None:
        """Open the connection (TCP, TLS, upgrade).

        Raises ConnectError (an OSError) when the server cannot be reached in
        ``connect_timeout``, ConnectionRefused when it refuses the upgrade,
        CertificateMismatch when its certificate is not the pinned one.
        """
        try:
            with anyio.fail_after(self.config.connect_timeout):
                await self._connect_once()
        except anyio.get_cancelled_exc_class():
            await self._close_tasks()
            raise
        except BaseException as exc:
            await self._close_tasks()
            raise self._driver.connect_failed(exc) from exc

    async def _connect_once(self) -> None:
        config = self.config
        host, port = config.host_port
        opened = _Waiter()
        core = self._driver.new_connection(opened, anyio.current_time())
        if config.plaintext:
            stream: anyio.abc.ByteStream = await anyio.connect_tcp(host, port)
        else:
            stream = await anyio.connect_tcp(
                host,
                port,
                ssl_context=config.tls.ssl_context(),
                tls_hostname=config.server_hostname,
                tls_standard_compatible=False,
            )
            der = stream.extra(TLSAttribute.peer_certificate_binary, None)
            try:
                config.tls.check_peer(der)
            except CertificateMismatch:
                await anyio.aclose_forcefully(stream)
                raise
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._stream = stream
        self._wake = anyio.Event()
        started = anyio.Event()
        self._done = done = anyio.Event()

        async def runner() -> None:
            try:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    tg.start_soon(self._reader, core, stream)
                    tg.start_soon(self._writer, core, stream)
                    tg.start_soon(self._timers)
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
        await opened.wait()

    async def disconnect(self) -> None:
        """Close the connection (close handshake, bounded wait); subscriptions end."""
        driver = self._driver
        with contextlib.suppress(HardLightError):
            driver.disconnect()
        if self._wake is not None:
            self._wake.set()
            with anyio.move_on_after(1.0):
                while self._stream is not None:
                    await anyio.sleep(0.01)
        await self._close_tasks()
        driver.disconnected()
        driver.close_subscriptions()

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

    async def __aenter__(self) -> Client[S]:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def call(
        self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """Call ``method``; returns its decoded result or raises an RpcError
        (CallTimeout after ``timeout`` seconds; None means ``config.call_timeout``)."""
        waiter = _Waiter()
        driver = self._driver
        now = anyio.current_time()
        call_id = driver.start_call(method, args, waiter, now, timeout, kwargs)
        if self._wake is not None:
            self._wake.set()
        try:
            return await waiter.wait()
        except anyio.get_cancelled_exc_class():
            driver.cancel_call(call_id, waiter)
            raise

    def subscribe(self) -> Subscription:
        """The events the server sends from now on (each subscription gets every event)."""
        return Subscription(self._subscription_channel(), self._unsubscribe)

    async def _reader(self, core: ClientCore, stream: anyio.abc.ByteStream) -> None:
        driver = self._driver
        while True:
            try:
                data = await stream.receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = b""
            except Exception as exc:  # OSError, TLS errors
                log.debug("client read failed: %s", exc)
                data = b""
            alive = driver.core is core and driver.receive_data(data, anyio.current_time())
            if self._wake is not None:
                self._wake.set()
            if not data or not alive:
                break
        if self._stream is stream:
            self._stream = None
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(stream)
        if driver.core is core:
            driver.connection_lost(anyio.current_time())
            if driver.should_reconnect and not self._reconnecting:
                _spawn_detached(self._reconnect)

    async def _reconnect(self) -> None:
        """Reconnect with the configured backoff (pending calls were already failed)."""
        self._reconnecting = True
        try:
            await self._close_tasks()
            await reconnect_with_backoff(self, self.connect, self._wake_writer)
        finally:
            self._reconnecting = False

    def _wake_writer(self) -> None:
        if self._wake is not None:
            self._wake.set()

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
                    with contextlib.suppress(Exception):
                        await anyio.aclose_forcefully(stream)
                    return

    async def _timers(self) -> None:
        driver = self._driver
        while True:
            deadline = driver.get_timer()
            now = anyio.current_time()
            await anyio.sleep(max(0.0, min((deadline or now + 1.0) - now, 1.0)))
            driver.handle_timer(anyio.current_time())
            if self._wake is not None:
                self._wake.set()


_background: set[Any] = set()


def _spawn_detached(runner: Callable[[], Awaitable[None]]) -> None:
    """Run ``runner()`` as a task of the running backend, outside the caller's scopes."""
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(runner)
    else:
        import asyncio

        async def main() -> None:
            await runner()

        task = asyncio.get_running_loop().create_task(main())
        _background.add(task)  # keep a reference until it ends
        task.add_done_callback(_background.discard)


@contextlib.asynccontextmanager
async def connect(
    service: type[S],
    config: ClientConfig | None = None,
    *,
    on_reconnect: ReconnectHook | None = None,
) -> AsyncIterator[S]:
    """Connect a client of ``service`` and yield its typed proxy; disconnect on exit::

        async with connect(Kv, config) as kv:
            value = await kv.get("a")        # typed as Kv.get declares

    ``client_of(kv)`` is the :class:`Client` (state, subscribe, ...)."""
    client = Client(service, config)
    if on_reconnect is not None:
        client.on_reconnect(on_reconnect)
    await client.connect()
    try:
        yield client.proxy
    finally:
        await client.disconnect()


def client_of(proxy: object) -> Client[Any]:
    """The :class:`Client` behind a proxy from :func:`connect` or ``client.proxy``."""
    client = proxy_client(proxy)
    if not isinstance(client, Client):
        raise TypeError(f"{proxy!r} is not a proxy of a hardlight_anyio client")
    return client


def client_class(service: type[Any]) -> type[Any]:
    """A client class for ``service`` (untyped methods: prefer :func:`connect` or
    ``client.proxy`` for calls a type checker checks)."""

    def __init__(self: Client[Any], config: ClientConfig | None = None) -> None:
        Client.__init__(self, service, config)

    return type(f"{service.__name__}Client", (Client,), {"__init__": __init__})
