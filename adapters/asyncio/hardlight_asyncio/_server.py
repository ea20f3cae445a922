"""The asyncio server: an ``asyncio.Protocol`` per connection around a ``ServerSession``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

from hardlight_core import (
    HandlerCall,
    HardLightError,
    Limits,
    ServerConfig,
    ServerCore,
    ServerSession,
    Topic,
    TopicCreated,
    TopicRemoved,
    encode,
)

from ._tls_socket import TLSListener, supports_socket_tls

__all__ = ["EventEmitter", "Server", "TopicNotifier"]

log = logging.getLogger("hardlight")

NOTIFIER_QUEUE_SIZE = 10_000
#: queued output past which a burst of answers is written before the burst ends
FLUSH_BYTES = 2048


class EventEmitter:
    """Sends events of one type to topics, from application code (many may exist)."""

    def __init__(self, core: ServerCore, event_type: Any) -> None:
        self._core = core
        self._event_type = event_type

    async def emit(self, topic: Topic, event: Any) -> int:
        """Queue ``event`` to every connection subscribed to ``topic``; returns how many."""
        return self.emit_nowait(topic, event)

    def emit_nowait(self, topic: Topic, event: Any) -> int:
        """:meth:`emit` without awaiting (the work is synchronous)."""
        return self._core.emit(topic, encode(event, self._event_type))


class TopicNotifier:
    """``TopicCreated`` / ``TopicRemoved`` as they happen (an async iterator; bounded)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[TopicCreated | TopicRemoved | None] = asyncio.Queue(
            NOTIFIER_QUEUE_SIZE
        )
        self.dropped = 0

    def _put(self, change: TopicCreated | TopicRemoved | None) -> None:
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("topic notifier queue full; dropped %s", change)

    async def recv(self) -> TopicCreated | TopicRemoved | None:
        """The next notification, or None once the server stopped."""
        return await self._queue.get()

    def __aiter__(self) -> AsyncIterator[TopicCreated | TopicRemoved]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[TopicCreated | TopicRemoved]:
        while True:
            change = await self._queue.get()
            if change is None:
                return
            yield change


class _Connection(asyncio.Protocol):
    """Moves bytes between one transport and one ServerSession; runs its handler calls."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server._loop
        self.session: ServerSession = server.core.open_session()
        self.session.adapter = self
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.flush_scheduled = False
        self.paused = False
        self.close_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=256 * 1024)
        self.server._connections.add(self)
        self._rearm()

    def pause_writing(self) -> None:
        # The peer is not reading: keep further output in the core, whose
        # max_outgoing_bytes bound closes a connection that never catches up.
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._flush()

    def data_received(self, data: bytes) -> None:
        # this connection is flushed at the end of this method: no separate flush needed
        already = self.flush_scheduled
        self.flush_scheduled = True
        try:
            calls = self.session.receive_data(data, self.loop.time())
        except Exception:
            log.exception("server session failed on input; closing the connection")
            self._abort()
            return
        outgoing = self.session.connection
        for call in calls:
            self._spawn(call)
            if outgoing.outgoing_size >= FLUSH_BYTES:
                self._write_now()  # let the peer start on these while we compute the rest
        if not already:  # else the flush already queued for this turn writes everything
            self._flush()

    def eof_received(self) -> bool | None:
        self.session.receive_data(b"", self.loop.time())
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost()
        self.server._connections.discard(self)
        for task in list(self.tasks):
            task.cancel()
        if self.timer is not None:
            self.timer.cancel()
        if self.close_timer is not None:
            self.close_timer.cancel()
        self.transport = None

    def _spawn(self, call: HandlerCall) -> None:
        if call.never_awaits:
            # a handler without any await cannot suspend: run it now, and its answer
            # leaves with this read's flush (no task, no extra loop turn)
            try:
                call.coroutine.send(None)
            except StopIteration as done:
                self.session.complete(call, value=done.value)
                return
            except BaseException as exc:
                self.session.complete(call, error=exc)
                return
            call.coroutine.close()  # unreachable for such code; never leave it hanging
            self.session.complete(call, error=RuntimeError("handler suspended unexpectedly"))
            return
        # A real task, so handlers can use anything that needs one (anyio, timeouts,
        # contextvars); the answer is flushed in the next loop turn with the others.
        task = self.loop.create_task(self._run(call))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, call: HandlerCall) -> None:
        try:
            value = await call.coroutine
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.session.complete(call, error=exc)
        else:
            self.session.complete(call, value=value)
        if len(self.tasks) <= 1:
            self._flush()  # the last running call: answer now, not in the next loop turn

    def schedule_flush(self) -> None:
        """Coalesce: write everything queued during this loop turn in one write."""
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.server._schedule(self)

    def _flush(self) -> None:
        self.flush_scheduled = False
        transport = self.transport
        if transport is None:
            return
        if self.paused:
            if self.session.connection.state.value in ("closed", "error"):
                transport.abort()  # ended while the peer was not reading: nothing more to say
            return
        data = self.session.data_to_send()
        if data:
            transport.write(data)
        if self.session.finished:
            transport.close()
            # TLS close waits for the peer's close_notify: do not wait forever
            if self.close_timer is None:
                self.close_timer = self.loop.call_later(
                    self.session.connection.limits.close_timeout, transport.abort
                )
        else:
            self._rearm()

    def _write_now(self) -> None:
        transport = self.transport
        if transport is not None and not self.paused:
            data = self.session.data_to_send()
            if data:
                transport.write(data)

    def _rearm(self) -> None:
        # Lazy: an armed timer that fires early is harmless (handle_timer re-checks),
        # so re-arm only when the deadline moved earlier; idle deadlines only move later.
        deadline = self.session.get_timer()
        timer = self.timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                self.timer = None
            return
        if timer is not None:
            if timer.when() <= deadline:
                return
            timer.cancel()
        self.timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.session.handle_timer(self.loop.time())
        self._flush()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Server:
    """A HardLight server on asyncio: ``Server(config, HandlerClass)``."""

    def __init__(
        self,
        config: ServerConfig,
        handler: type[Any],
        *,
        handler_factory: Any = None,
        bus: Any = None,
        tls_transport: str = "auto",
    ) -> None:
        if tls_transport not in ("auto", "socket", "asyncio"):
            raise ValueError(f"tls_transport: auto, socket or asyncio, not {tls_transport!r}")
        self.config = config
        #: "socket": TLS on non-blocking SSLSockets (faster); "asyncio": the loop's own TLS;
        #: "auto": socket where the loop supports it
        self.tls_transport = tls_transport
        #: an event bus spanning several servers (``NatsBus``), or None for this node only
        self.bus = bus
        self.core = ServerCore.from_config(config, handler, handler_factory)
        self.core.on_output = self._on_output
        self.core.on_topic = self._on_topic
        self._notifier: TopicNotifier | None = None
        self._server: asyncio.Server | TLSListener | None = None
        self._connections: set[_Connection] = set()
        # connections with output to write this loop turn, flushed by one callback
        self._dirty: list[_Connection] = []
        self._flush_pending = False
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._stopped: asyncio.Event | None = None

    # -- application API ---------------------------------------------------------------------

    def event_emitter(self, event_type: Any) -> EventEmitter:
        """An emitter for events of ``event_type`` (take as many as you like)."""
        return EventEmitter(self.core, event_type)

    def topic_notifier(self) -> TopicNotifier:
        """The one receiver of topic Created/Removed notifications."""
        if self._notifier is not None:
            raise HardLightError("topic_notifier() may be called only once per server")
        self._notifier = TopicNotifier()
        return self._notifier

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on."""
        if self._server is None or not self._server.sockets:
            return (self.config.host, self.config.port)
        host, port = self._server.sockets[0].getsockname()[:2]
        return (host, port)

    @property
    def port(self) -> int:
        """The bound port."""
        return self.address[1]

    @property
    def connection_count(self) -> int:
        """Open sockets (including those still in their handshake)."""
        return len(self._connections)

    async def start(self) -> None:
        """Bind and start accepting."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        ssl_context = self.config.tls.ssl_context() if self.config.tls is not None else None
        if ssl_context is not None and _use_socket_tls(self.tls_transport, self._loop):
            limits = self.config.limits or Limits()
            self._server = await TLSListener.bind(
                self._loop,
                lambda: _Connection(self),
                self.config.host,
                self.config.port,
                ssl_context,
                backlog=self.config.backlog,
                handshake_timeout=limits.handshake_timeout,
            )
        else:
            self._server = await self._loop.create_server(
                lambda: _Connection(self),
                self.config.host,
                self.config.port,
                ssl=ssl_context,
                backlog=self.config.backlog,
                reuse_address=True,
            )
        if self.bus is not None:
            try:
                await self.bus.start(self.core)
            except BaseException:
                self._server.close()
                self._server = None
                raise
        log.info("hardlight server listening on %s:%d", *self.address)

    async def serve_forever(self) -> None:
        """Run until :meth:`stop` (starting first if needed)."""
        if self._server is None:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    run = serve_forever

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let running calls finish within ``grace``, close with 1001."""
        if self._server is None:
            return
        grace = self.config.shutdown_grace if grace is None else grace
        self._server.close()
        deadline = self._loop.time() + grace
        while any(c.tasks for c in self._connections) and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self._connections):
            for task in list(conn.tasks):
                task.cancel()
            conn.session.close(1001, "server shutting down")
            conn._flush()
        close_deadline = self._loop.time() + min(grace, 2.0) + 0.5
        while self._connections and self._loop.time() < close_deadline:
            await asyncio.sleep(0.01)
        for conn in list(self._connections):
            conn._abort()
        await self._server.wait_closed()
        self._server = None
        if self.bus is not None:
            await self.bus.close()
        if self._notifier is not None:
            self._notifier._put(None)
        if self._stopped is not None:
            self._stopped.set()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- core hooks ------------------------------------------------------------------------

    def _on_output(self, session: ServerSession) -> None:
        conn = session.adapter
        if conn is not None:
            conn.schedule_flush()

    def _schedule(self, conn: _Connection) -> None:
        # One loop callback for every connection with output (a fan-out to 1,000
        # connections is one callback, not 1,000); each appears at most once per turn.
        self._dirty.append(conn)
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._flush_pending = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            if conn.flush_scheduled:  # else already written by its own data_received
                try:
                    conn._flush()
                except Exception:
                    log.exception("flushing a connection failed; aborting it")
                    conn._abort()

    def _on_topic(self, change: TopicCreated | TopicRemoved) -> None:
        if self.bus is not None:
            self.bus.topic_changed(change)
        if self._notifier is not None:
            self._notifier._put(change)


def _use_socket_tls(choice: str, loop: asyncio.AbstractEventLoop) -> bool:
    if choice == "socket":
        if not supports_socket_tls(loop):
            raise HardLightError(f"tls_transport='socket' needs a selector loop, not {loop!r}")
        return True
    return choice == "auto" and supports_socket_tls(loop)
