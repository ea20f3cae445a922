"""The asyncio client: an ``asyncio.Protocol`` around a ``ClientCore``, typed methods on top."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any, TypeVar, cast

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

from ._tls_socket import open_tls_connection, supports_socket_tls

__all__ = ["Client", "client_class"]

log = logging.getLogger("hardlight")

EVENT_QUEUE_SIZE = 10_000
FLUSH_BYTES = 2048
S = TypeVar("S")


class _Protocol(asyncio.Protocol):
    def __init__(self, client: Client, core: ClientCore) -> None:
        self.client = client
        self.core = core
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.flush_scheduled = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.client._handle(self.core.receive_data(data, self.loop.time()))
        self.flush()

    def eof_received(self) -> bool | None:
        self.client._handle(self.core.receive_data(b"", self.loop.time()))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
        try:
            outcomes = self.core.receive_data(b"", self.loop.time())
        except Exception:
            outcomes = []
        self.client._handle(outcomes)
        self.client._lost(self, exc)

    def schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is None:
            return
        data = self.core.data_to_send()
        if data:
            self.transport.write(data)
        deadline = self.core.get_timer()
        timer = self.timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                self.timer = None
            return
        if timer is not None:
            if timer.when() <= deadline:
                return  # fires early and re-checks: cheaper than re-arming per message
            timer.cancel()
        self.timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.client._handle(self.core.handle_timer(self.loop.time()))
        self.flush()


class Client:
    """A HardLight client of one service on asyncio.

    ``Client(Counter, config)`` has one coroutine method per service method
    (``await client.increment(1)``); see :func:`client_class` for a typed class.
    """

    def __init__(
        self,
        service: type[Any],
        config: ClientConfig | None = None,
        *,
        tls_transport: str = "auto",
    ) -> None:
        if tls_transport not in ("auto", "socket", "asyncio"):
            raise ValueError(f"tls_transport: auto, socket or asyncio, not {tls_transport!r}")
        #: "socket": TLS on a non-blocking SSLSocket (faster); "asyncio": the loop's own TLS;
        #: "auto": socket where the loop supports it
        self.tls_transport = tls_transport
        self.service = service
        self.config = config or ClientConfig()
        self.spec = ServiceSpec.of(service)
        self._core: ClientCore | None = None
        self._protocol: _Protocol | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._opened: asyncio.Future[None] | None = None
        self._events: asyncio.Queue[EventDelivered | None] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self.events_dropped = 0
        self._state: Any = None
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._deadlines: dict[int, tuple[float, asyncio.Future[Any], str, float]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
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
        return (
            self._protocol is not None
            and self._protocol.transport is not None
            and (self._opened is not None and self._opened.done() and not self._opened.exception())
        )

    async def connect(self) -> None:
        """Open the connection (TLS, upgrade); raises on refusal or a certificate problem."""
        self._closing = False
        await asyncio.wait_for(self._connect_once(), self.config.connect_timeout)

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.config.host_port
        core = ClientCore(
            self.service,
            f"{host}:{port}",
            compression_level=self.config.compression_level,
            limits=self.config.limits,
        )
        ssl_context = None if self.config.plaintext else self.config.tls.ssl_context()
        self._opened = loop.create_future()
        self._core = core
        socket_tls = ssl_context is not None and (
            self.tls_transport == "socket"
            or (self.tls_transport == "auto" and supports_socket_tls(loop))
        )
        transport: asyncio.BaseTransport
        if socket_tls:
            assert ssl_context is not None
            transport, protocol = await open_tls_connection(
                loop,
                lambda: _Protocol(self, core),
                host,
                port,
                ssl_context,
                self.config.server_hostname,
            )
        else:
            transport, protocol = await loop.create_connection(
                lambda: _Protocol(self, core),
                host,
                port,
                ssl=ssl_context,
                server_hostname=self.config.server_hostname if ssl_context is not None else None,
            )
        if ssl_context is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            try:
                self.config.tls.check_peer(der)
            except CertificateMismatch:
                transport.abort()
                raise
        self._protocol = cast(_Protocol, protocol)
        self._state = core.state
        self._protocol.flush()
        await self._opened

    async def disconnect(self) -> None:
        """Close the connection (close handshake, bounded wait)."""
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        protocol = self._protocol
        if protocol is None or protocol.transport is None or self._core is None:
            return
        try:
            self._core.close()
            protocol.flush()
        except HardLightError:
            pass
        transport = protocol.transport
        if transport is not None:
            for _ in range(100):
                if protocol.transport is None:
                    break
                await asyncio.sleep(0.01)
            if protocol.transport is not None:
                protocol.transport.close()
        self._fail_all(ClientNotConnected("client disconnected"))

    async def __aenter__(self: S) -> S:
        await self.connect()  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    # -- calls -------------------------------------------------------------------------------

    async def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``method`` with ``args``; returns its decoded result or raises an RpcError."""
        core, protocol = self._core, self._protocol
        if core is None or protocol is None or protocol.transport is None:
            raise ClientNotConnected("not connected")
        call_id = core.start_call(method, args)
        loop = protocol.loop
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[call_id] = future
        if len(self._pending) == 1 or core.connection.outgoing_size >= FLUSH_BYTES:
            # a lone call leaves now, and a long burst in pieces (the server starts on
            # them while we queue the rest); a short burst is coalesced into one write
            protocol.flush()
        else:
            protocol.schedule_flush()
        timeout = self.config.call_timeout if timeout is None else timeout
        if timeout is not None:
            deadline = loop.time() + timeout
            self._deadlines[call_id] = (deadline, future, method, timeout)
            sweeper = self._sweeper
            if sweeper is None or sweeper.when() > deadline:
                if sweeper is not None:
                    sweeper.cancel()
                self._sweeper = loop.call_at(deadline, self._sweep)
        try:
            return await future
        except asyncio.CancelledError:
            if self._pending.pop(call_id, None) is not None:
                core.abandon_call(call_id)
            raise
        finally:
            entry = self._deadlines.get(call_id)
            if entry is not None and entry[1] is future:
                del self._deadlines[call_id]

    def _sweep(self) -> None:
        """One timer for every call's timeout (a timer per call costs more than the call)."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        earliest: float | None = None
        for call_id, (deadline, future, method, timeout) in list(self._deadlines.items()):
            if future.done():
                del self._deadlines[call_id]
            elif deadline <= now:
                del self._deadlines[call_id]
                if self._pending.get(call_id) is future:
                    del self._pending[call_id]
                    if self._core is not None:
                        self._core.abandon_call(call_id)
                future.set_exception(CallTimeout(f"{method}: no answer within {timeout} s"))
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._sweeper = loop.call_at(earliest, self._sweep)

    def state(self) -> Any:
        """The mirror of this connection's server-side state."""
        core = self._core
        return core.state if core is not None else self._state

    async def subscribe(self) -> AsyncIterator[EventDelivered]:
        """Events the server sends to this connection, as they arrive (one shared stream)."""
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    # -- from the protocol -------------------------------------------------------------------

    def _handle(self, outcomes: list[Any]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, CallOutcome):
                future = self._pending.pop(outcome.call_id, None)
                if future is None or future.done():
                    continue
                if outcome.error is not None:
                    future.set_exception(outcome.error)
                else:
                    future.set_result(outcome.value)
            elif isinstance(outcome, EventDelivered):
                try:
                    self._events.put_nowait(outcome)
                except asyncio.QueueFull:
                    self.events_dropped += 1
            elif isinstance(outcome, ClientOpened):
                if self._opened is not None and not self._opened.done():
                    self._opened.set_result(None)
            elif isinstance(outcome, ClientClosed):
                error = outcome.exception()
                if self._opened is not None and not self._opened.done():
                    self._opened.set_exception(error)
                self._fail_all(ClientNotConnected(str(error)))

    def _fail_all(self, error: RpcError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(type(error)(str(error)))

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(
                ClientNotConnected(f"connection lost during the handshake: {exc}")
            )
        self._fail_all(ClientNotConnected("connection lost"))
        if protocol is self._protocol and self._core is not None:
            self._state = self._core.state
        if self.config.reconnect is not None and not self._closing:
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        policy = self.config.reconnect
        assert policy is not None
        for delay in policy.delays():
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await asyncio.wait_for(self._connect_once(), self.config.connect_timeout)
            except (TimeoutError, OSError, HardLightError) as exc:
                log.info("reconnect failed: %s", exc)
                continue
            log.info("reconnected")
            return
        log.warning("giving up reconnecting after %d attempts", len(policy.delays()))


def client_class(service: type[S]) -> type[Any]:
    """A client class for ``service`` whose methods carry the service's signatures."""
    return type(f"{service.__name__}Client", (Client,), {"__init__": _bound_init(service)})


def _bound_init(service: type[Any]) -> Any:
    def __init__(self: Client, config: ClientConfig | None = None, **options: Any) -> None:
        Client.__init__(self, service, config, **options)

    return __init__
