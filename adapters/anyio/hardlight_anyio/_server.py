"""The anyio server (asyncio and trio backends): tasks around core ``ServerSession``s.

Structured: the server's tasks live in a task group opened by ``async with
Server(...)`` (or ``serve_forever()``); each connection has a reader loop, a writer
woken through an ``anyio.Event`` (so everything queued in one scheduling round
leaves in one send) and a timer task. Handler calls run in the server's task group.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Coroutine
from typing import Any

import anyio
import anyio.abc
import sniffio
from anyio.streams.tls import TLSListener

from hardlight_core import (
    HardLightError,
    ServerCore,
    ServerHooks,
    ServerSession,
)
from hardlight_support import (
    AsyncEventEmitter,
    AsyncTopicNotifier,
    ServerConfig,
    StopSignals,
    loop_waker,
    signal_name,
)

__all__ = ["EventEmitter", "Server", "TopicNotifier"]

log = logging.getLogger("hardlight")

READ_SIZE = 65536


#: the async emitter and notifier, the same on every async adapter
EventEmitter = AsyncEventEmitter
TopicNotifier = AsyncTopicNotifier


class _Connection:
    """One accepted stream: its session, reader, writer and timer."""

    def __init__(self, server: Server, stream: anyio.abc.ByteStream) -> None:
        self.server = server
        self.stream = stream
        self.session: ServerSession = server.core.open_session()
        self.session.adapter = self
        self.wake = anyio.Event()
        self.scope: anyio.CancelScope | None = None

    async def serve(self) -> None:
        raw = self.stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.session.peer = self.stream.extra(anyio.abc.SocketAttribute.remote_address, None)
        try:
            async with anyio.create_task_group() as tg:
                self.scope = tg.cancel_scope
                tg.start_soon(self._writer)
                tg.start_soon(self._timers)
                await self._reader()
        finally:
            self.session.connection_lost()
            with contextlib.suppress(Exception):
                await anyio.aclose_forcefully(self.stream)

    async def _reader(self) -> None:
        session = self.session
        while not session.finished:
            try:
                data = await self.stream.receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = b""
            except Exception as exc:  # OSError, TLS errors from a misbehaving peer
                log.debug("connection read failed: %s", exc)
                data = b""
            session.receive_data(data, anyio.current_time())
            self.wake.set()
            if not data:
                return
        await anyio.sleep_forever()  # the writer ends the connection once all is written

    async def _writer(self) -> None:
        session = self.session
        while True:
            await self.wake.wait()
            self.wake = anyio.Event()
            data = session.data_to_send()
            if data:
                try:
                    await self.stream.send(data)
                except Exception as exc:  # the peer went away
                    log.debug("connection write failed: %s", exc)
                    session.send_failed()
                    self.cancel()
                    return
            if session.finished:
                self.cancel()
                return

    async def _timers(self) -> None:
        session = self.session
        while True:
            deadline = session.get_timer()
            now = anyio.current_time()
            await anyio.sleep(max(0.0, min((deadline or now + 1.0) - now, 1.0)))
            session.handle_timer(anyio.current_time())
            self.wake.set()

    def cancel(self) -> None:
        if self.scope is not None:
            self.scope.cancel()


class Server:
    """A HardLight server on anyio: ``async with Server(config, HandlerClass) as server:``."""

    def __init__(
        self,
        config: ServerConfig,
        handler: type[Any],
        *,
        handler_factory: Any = None,
        bus: Any = None,
        hooks: ServerHooks | None = None,
    ) -> None:
        self.config = config
        #: an event bus spanning servers (``hardlight_asyncio.NatsBus``: asyncio backend only)
        self.bus = bus
        self.core = ServerCore.from_config(config, handler, handler_factory, hooks)
        self.core.on_output = _output_ready
        self.core.spawn = self._spawn
        if bus is not None:
            self.core.on_topic = bus.topic_changed
        self._listener: Any = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._accepting: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None
        self._address: tuple[str, int] = (config.host, config.port)
        self._running = False

    def event_emitter(self, event_type: Any) -> EventEmitter:
        """An emitter for events of ``event_type`` (take as many as you like)."""
        return EventEmitter(self.core, event_type)

    def topic_notifier(self) -> TopicNotifier:
        """The one receiver of topic Created/Removed notifications."""
        return TopicNotifier(self.core.topic_notifications())

    def add_hooks(self, hooks: ServerHooks) -> None:
        """Add callbacks for connections and calls (metrics, tracing); see ServerHooks."""
        self.core.add_hooks(hooks)

    def remove_hooks(self, hooks: ServerHooks) -> None:
        """Remove callbacks added by :meth:`add_hooks` or ``Server(hooks=...)``."""
        self.core.remove_hooks(hooks)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on."""
        return self._address

    @property
    def port(self) -> int:
        """The bound port."""
        return self._address[1]

    @property
    def connection_count(self) -> int:
        """Open sockets (including those still in their handshake)."""
        return self.core.connection_count

    async def __aenter__(self) -> Server:
        self._stopped = anyio.Event()
        self.core.clock = anyio.current_time
        self.core.accepting = True
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            listener = await anyio.create_tcp_listener(
                local_host=self.config.host,
                local_port=self.config.port,
                backlog=self.config.backlog,
                reuse_port=self.config.reuse_port,
            )
            sockname = listener.extra(anyio.abc.SocketAttribute.local_address)
            self._address = (str(sockname[0]), int(sockname[1]))
            if self.config.tls is not None:
                self._listener = TLSListener(
                    listener,
                    self.config.tls.ssl_context(),
                    standard_compatible=False,
                    handshake_timeout=self.core.limits.handshake_timeout,
                )
            else:
                self._listener = listener
            if self.bus is not None:
                if sniffio.current_async_library() != "asyncio":
                    raise HardLightError("NatsBus runs on the asyncio backend of anyio only")
                await self.bus.start(self.core)
            await self._tg.start(self._accept)
        except BaseException:
            self._tg.cancel_scope.cancel()
            tg, self._tg = self._tg, None
            await tg.__aexit__(None, None, None)
            raise
        self._running = True
        self.core.started(*self._address)
        return self

    async def _accept(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        listener = self._listener
        with anyio.CancelScope() as scope:
            self._accepting = scope
            task_status.started()
            assert self._tg is not None
            try:
                await listener.serve(self._handle, task_group=self._tg)
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await listener.aclose()

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        if not self.core.may_accept():
            await anyio.aclose_forcefully(stream)  # over the pending-handshake bound
            return
        await _Connection(self, stream).serve()

    async def serve_forever(self) -> None:
        """Serve until :meth:`stop`, SIGTERM or SIGINT (or this task is cancelled).

        Inside ``async with server:`` it waits in that server; otherwise it opens one.
        In the main thread, SIGTERM and SIGINT stop the server gracefully (``stop()``
        with the configured grace) and this returns; the previous handlers are put
        back on return. A second signal acts as it would have without the server.
        """
        if self._tg is not None:
            await self._wait_for_stop()
            return
        async with self:
            await self._wait_for_stop()

    run = serve_forever

    async def _wait_for_stop(self) -> None:
        stopped = self._stopped
        assert stopped is not None
        with StopSignals(loop_waker(self._on_signal)) as signals:
            await stopped.wait()
        if signals.received is not None:
            await self.stop()

    def _on_signal(self, signum: int) -> None:
        if self._stopped is not None and not self._stopped.is_set():
            self.core.stop_reason = signal_name(signum)
            self._stopped.set()  # wakes _wait_for_stop, which stops gracefully

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let running calls finish within ``grace``, close with 1001."""
        if not self._running:
            return
        self._running = False
        grace = self.config.shutdown_grace if grace is None else grace
        if self._accepting is not None:
            self._accepting.cancel()
        for step in self.core.shutdown(grace):
            with anyio.move_on_after(step.timeout):
                while not step.done():
                    await anyio.sleep(0.01)
        for session in list(self.core.sessions):
            session.adapter.cancel()
        self._listener = None
        self.core.stopped()
        if self._stopped is not None:
            self._stopped.set()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self.bus is not None:
            await self.bus.close()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            tg, self._tg = self._tg, None
            await tg.__aexit__(None, None, None)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> Any:
        scope = anyio.CancelScope()

        async def run() -> None:
            try:
                with scope:
                    await coroutine
            finally:
                coroutine.close()  # cancelled before it started: never leave it unawaited

        if self._tg is None:
            coroutine.close()
            raise HardLightError("the server is not running")
        self._tg.start_soon(run)
        return scope.cancel


def _output_ready(session: ServerSession) -> None:
    conn = session.adapter
    if conn is not None:
        conn.wake.set()
