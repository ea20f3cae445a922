"""The asyncio client: an ``asyncio.Protocol`` feeding the core's ``ClientDriver``.

The driver decides everything (calls, timeouts, events, state, reconnection); this
module opens the socket, moves bytes, resolves futures and sets one timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

from hardlight_core import EventDelivered, HardLightError
from hardlight_core._client_driver import proxy_client
from hardlight_support import (
    ChannelReader,
    ClientBase,
    ClientConfig,
    reconnect_with_backoff,
)

from ._tls_socket import open_tls_connection, supports_socket_tls

__all__ = ["Client", "ReconnectHook", "Subscription", "client_class", "client_of", "connect"]

log = logging.getLogger("hardlight")

FLUSH_BYTES = 2048
S = TypeVar("S")
T = TypeVar("T")
C = TypeVar("C", bound="Client[Any]")

#: ``async def hook(client) -> None``: runs after each automatic reconnect
ReconnectHook = Callable[["Client[Any]"], Awaitable[None]]


class Subscription(ChannelReader[EventDelivered]):
    """Events the server sends to this connection (an async iterator; bounded). Every
    subscription gets every event; it ends when the client disconnects."""


class _Protocol(asyncio.Protocol):
    def __init__(self, client: Client[Any]) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.client._protocol is self:
            self.client._driver.receive_data(data, self.loop.time())
            self.client._flush()

    def eof_received(self) -> bool | None:
        if self.client._protocol is self:
            self.client._driver.receive_data(b"", self.loop.time())
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.client._lost(self, exc)


class Client(ClientBase[S]):
    """A HardLight client of one service on asyncio.

    ``Client(Counter, config)`` has one coroutine method per service method
    (``await client.increment(1)``, untyped); ``client.proxy`` is the same calls typed
    as the service (``await client.proxy.increment(1)`` is checked by mypy).
    """

    def __init__(
        self,
        service: type[S],
        config: ClientConfig | None = None,
        *,
        tls_transport: str = "auto",
    ) -> None:
        if tls_transport not in ("auto", "socket", "asyncio"):
            raise ValueError(f"tls_transport: auto, socket or asyncio, not {tls_transport!r}")
        #: "socket": TLS on a non-blocking SSLSocket (faster); "asyncio": the loop's own TLS;
        #: "auto": socket where the loop supports it
        self.tls_transport = tls_transport
        self._protocol: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._reconnect_task: asyncio.Task[None] | None = None
        super().__init__(service, config)

    def on_reconnect(self, hook: ReconnectHook) -> ReconnectHook:
        """Run ``await hook(client)`` after each automatic reconnect, before any other caller's
        call is sent (calls made meanwhile wait until it returns). Re-subscribe there.
        One hook; returns it (a decorator)."""
        self._set_reconnect_hook(hook)
        return hook

    # -- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection (TCP, TLS, upgrade).

        Raises ConnectError (an OSError) when the server cannot be reached in
        ``connect_timeout``, ConnectionRefused when it refuses the upgrade,
        CertificateMismatch when its certificate is not the pinned one.
        """
        try:
            await asyncio.wait_for(self._connect_once(), self.config.connect_timeout)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise self._driver.connect_failed(exc) from exc

    async def _connect_once(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        config = self.config
        host, port = config.host_port
        opened: asyncio.Future[None] = loop.create_future()
        self._driver.new_connection(opened, loop.time())
        ssl_context = None if config.plaintext else config.tls.ssl_context()
        socket_tls = ssl_context is not None and (
            self.tls_transport == "socket"
            or (self.tls_transport == "auto" and supports_socket_tls(loop))
        )
        transport: asyncio.BaseTransport
        if socket_tls:
            assert ssl_context is not None
            transport, protocol = await open_tls_connection(
                loop, lambda: _Protocol(self), host, port, ssl_context, config.server_hostname
            )
        else:
            transport, protocol = await loop.create_connection(
                lambda: _Protocol(self),
                host,
                port,
                ssl=ssl_context,
                server_hostname=config.server_hostname if ssl_context is not None else None,
            )
        try:
            if ssl_context is not None:
                ssl_object = transport.get_extra_info("ssl_object")
                der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
                config.tls.check_peer(der)
            self._protocol = cast(_Protocol, protocol)
            self._flush()
            await opened
        except BaseException:
            self._protocol = None
            transport.abort()
            raise

    async def disconnect(self) -> None:
        """Close the connection (close handshake, bounded wait); subscriptions end."""
        driver = self._driver
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            self._reconnect_task = None
        with contextlib.suppress(HardLightError):
            driver.disconnect()
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            self._flush()
            for _ in range(100):
                if protocol.transport is None:
                    break
                await asyncio.sleep(0.01)
            if protocol.transport is not None:
                protocol.transport.close()
        self._protocol = None
        driver.disconnected()
        driver.close_subscriptions()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def __aenter__(self: C) -> C:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    # -- calls -------------------------------------------------------------------------------

    async def call(
        self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """Call ``method`` with ``args``; returns its decoded result or raises an RpcError
        (CallTimeout after ``timeout`` seconds; None means ``config.call_timeout``)."""
        loop = asyncio.get_running_loop()
        driver = self._driver
        waiter: asyncio.Future[Any] = loop.create_future()
        call_id = driver.start_call(method, args, waiter, loop.time(), timeout, kwargs)
        core = driver.core
        if driver.calls_pending == 1 or (
            core is not None and core.connection.outgoing_size >= FLUSH_BYTES
        ):
            # a lone call leaves now, and a long burst in pieces (the server starts on
            # them while we queue the rest); a short burst is coalesced into one write
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        try:
            return await waiter
        except asyncio.CancelledError:
            driver.cancel_call(call_id, waiter)
            raise

    def subscribe(self) -> Subscription:
        """The events the server sends from now on (each subscription gets every event)."""
        return Subscription(self._subscription_channel(), self._unsubscribe)

    # -- moving bytes and time ----------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            return
        data = self._driver.data_to_send()
        if data:
            protocol.transport.write(data)
        self._rearm()

    def _rearm(self) -> None:
        deadline = self._driver.get_timer()
        timer = self._timer
        if deadline is None or self._loop is None:
            return
        if timer is not None:
            if timer.when() <= deadline:
                return  # fires early and re-checks: cheaper than re-arming per message
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self._loop is not None
        self._driver.handle_timer(self._loop.time())
        self._flush()
        self._rearm()

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        driver = self._driver
        driver.connection_lost(protocol.loop.time(), exc)
        if driver.should_reconnect and self._reconnect_task is None:
            self._reconnect_task = protocol.loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            await reconnect_with_backoff(self, self.connect, self._flush)
        finally:
            self._reconnect_task = None


@contextlib.asynccontextmanager
async def connect(
    service: type[S],
    config: ClientConfig | None = None,
    *,
    on_reconnect: ReconnectHook | None = None,
    tls_transport: str = "auto",
) -> AsyncIterator[S]:
    """Connect a client of ``service`` and yield its typed proxy; disconnect on exit::

        async with connect(Kv, config) as kv:
            value = await kv.get("a")        # typed as Kv.get declares

    ``client_of(kv)`` is the :class:`Client` (state, subscribe, ...)."""
    client = Client(service, config, tls_transport=tls_transport)
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
        raise TypeError(f"{proxy!r} is not a proxy of a hardlight_asyncio client")
    return client


def client_class(service: type[S]) -> type[Any]:
    """A client class for ``service`` (untyped methods: prefer :func:`connect` or
    ``client.proxy`` for calls a type checker checks)."""
    return type(f"{service.__name__}Client", (Client,), {"__init__": _bound_init(service)})


def _bound_init(service: type[Any]) -> Any:
    def __init__(self: Client[Any], config: ClientConfig | None = None, **options: Any) -> None:
        Client.__init__(self, service, config, **options)

    return __init__
