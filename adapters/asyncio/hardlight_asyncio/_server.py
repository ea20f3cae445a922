"""The asyncio server: an ``asyncio.Protocol`` per connection around a core ``ServerSession``.

The core decides everything; this module reads, writes, runs handler calls as tasks
and sets one timer per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any, cast

from hardlight_core import (
    Limits,
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
from hardlight_support.workers import notify_ready, reserve_port, run_workers

from ._tls_socket import TLSListener, supports_socket_tls

__all__ = ["EventEmitter", "Server", "TopicNotifier"]

log = logging.getLogger("hardlight")

#: queued output past which a burst of answers is written before the burst ends
FLUSH_BYTES = 2048


#: the async emitter and notifier, the same on every async adapter
EventEmitter = AsyncEventEmitter
TopicNotifier = AsyncTopicNotifier


class _Connection(asyncio.Protocol):
    """Moves bytes between one transport and one ServerSession."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server._loop
        self.session: ServerSession = server.core.open_session()
        self.session.adapter = self
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.reading = False
        self.flush_scheduled = False
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        self.session.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.set_write_buffer_limits(high=256 * 1024)
        self._rearm()

    def pause_writing(self) -> None:
        # The peer is not reading: further output stays in the core, whose
        # max_outgoing_bytes bound closes a connection that never catches up.
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.reading = True
        try:
            self.session.receive_data(data, self.loop.time())
        finally:
            self.reading = False
        self.flush()

    def eof_received(self) -> bool | None:
        self.session.receive_data(b"", self.loop.time())
        self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost()
        for timer in (self.timer, self.close_timer):
            if timer is not None:
                timer.cancel()
        self.transport = None

    def output_ready(self) -> None:
        """The core queued output: write now, or once this loop turn's calls are done."""
        if self.reading:
            if self.session.connection.outgoing_size >= FLUSH_BYTES:
                self.write_now()  # let the peer start on these while we compute the rest
            return  # data_received writes the rest when it returns
        if not self.session.running:
            self.flush()  # the last running call: answer now, not in the next loop turn
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.server._schedule(self)

    def flush(self) -> None:
        """Write what the core queued, close when it is finished, re-arm the timer."""
        self.flush_scheduled = False
        transport = self.transport
        if transport is None:
            return
        if self.paused:
            if self.session.connection.state.ended:
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

    def write_now(self) -> None:
        transport = self.transport
        if transport is not None and not self.paused:
            data = self.session.data_to_send()
            if data:
                transport.write(data)

    def _rearm(self) -> None:
        # Lazy: a timer that fires early is harmless (handle_timer re-checks), so
        # re-arm only when the deadline moved earlier; idle deadlines only move later.
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
        self.flush()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _Turnaway(asyncio.Protocol):
    """A socket over the pending-handshake bound: closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()


class Server:
    """A HardLight server on asyncio: ``Server(config, HandlerClass)``."""

    def __init__(
        self,
        config: ServerConfig,
        handler: type[Any],
        *,
        handler_factory: Any = None,
        bus: Any = None,
        hooks: ServerHooks | None = None,
        tls_transport: str = "auto",
        workers: int = 1,
    ) -> None:
        if tls_transport not in ("auto", "socket", "asyncio"):
            raise ValueError(f"tls_transport: auto, socket or asyncio, not {tls_transport!r}")
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers: a number of processes, at least 1, not {workers!r}")
        if workers > 1 and bus is not None:
            raise ValueError("workers=N shares events through its own bus (WorkerBus): no bus=")
        self.config = config
        #: processes :meth:`run_workers` runs, each accepting on the port (SO_REUSEPORT)
        self.workers = workers
        self._handler = handler
        self._handler_factory = handler_factory
        #: "socket": TLS on non-blocking SSLSockets (faster); "asyncio": the loop's own TLS;
        #: "auto": socket where the loop supports it
        self.tls_transport = tls_transport
        #: an event bus spanning several servers (``NatsBus``), or None for this node only
        self.bus = bus
        self.core = ServerCore.from_config(config, handler, handler_factory, hooks)
        self.core.on_output = _output_ready
        self.core.spawn = self._spawn
        if bus is not None:
            self.core.on_topic = bus.topic_changed
        self._server: asyncio.Server | TLSListener | None = None
        self._signal_stop: asyncio.Task[None] | None = None
        # connections with output after this loop turn's calls, flushed by one callback
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
        return self.core.connection_count

    async def start(self) -> None:
        """Bind and start accepting."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.core.clock = self._loop.time
        self.core.accepting = True
        ssl_context = self.config.tls.ssl_context() if self.config.tls is not None else None
        if ssl_context is not None and _use_socket_tls(self.tls_transport, self._loop):
            limits = self.config.limits or Limits()
            self._server = await TLSListener.bind(
                self._loop,
                self._new_connection,
                self.config.host,
                self.config.port,
                ssl_context,
                backlog=self.config.backlog,
                handshake_timeout=limits.handshake_timeout,
                reuse_port=self.config.reuse_port,
            )
        else:
            self._server = await self._loop.create_server(
                self._new_connection,
                self.config.host,
                self.config.port,
                ssl=ssl_context,
                backlog=self.config.backlog,
                reuse_address=True,
                reuse_port=self.config.reuse_port or None,
            )
        if self.bus is not None:
            try:
                await self.bus.start(self.core)
            except BaseException:
                self._server.close()
                self._server = None
                raise
        self.core.started(*self.address)

    async def serve_forever(self) -> None:
        """Run until :meth:`stop`, or SIGTERM / SIGINT (starting first if needed).

        In the main thread, SIGTERM and SIGINT stop the server gracefully (``stop()``
        with the configured grace) and this returns; the previous handlers are put
        back on return. A second signal acts as it would have without the server.
        """
        if self.workers > 1:
            raise RuntimeError(
                f"a Server with workers={self.workers} runs from synchronous code: "
                "server.run_workers() (it starts the worker processes; not inside an event loop)"
            )
        if self._server is None:
            await self.start()
        stopped = self._stopped
        assert stopped is not None
        with StopSignals(loop_waker(self._on_signal)):
            await stopped.wait()
        if self._signal_stop is not None:
            task, self._signal_stop = self._signal_stop, None
            await task

    run = serve_forever

    def run_workers(
        self,
        *,
        restarts: int = 0,
        on_ready: Callable[[tuple[str, int], list[int]], None] | None = None,
    ) -> int:
        """Serve with ``workers`` processes on one port until SIGTERM/SIGINT (blocking).

        The supervisor (this process) reserves the port, runs the :class:`WorkerHub` and
        starts the workers (multiprocessing, spawn); each builds
        ``Server(config, handler, bus=WorkerBus())`` with ``reuse_port=True`` and serves
        until the supervisor relays a stop signal. The handler class, the handler factory,
        ``authenticate`` and the hooks must be picklable (importable by name: defined at the
        top level of a module). ``on_ready((host, port), pids)`` runs once every worker
        listens. Returns 0 after a clean stop, 1 otherwise. With ``workers=1`` it serves in
        this process (``asyncio.run(serve_forever())``).
        """
        if self.workers == 1:
            asyncio.run(self.serve_forever())
            return 0
        from ._workers import WorkerHub

        config = dataclasses.replace(self.config, reuse_port=True)
        with reserve_port(config.host, config.port) as held:
            config = dataclasses.replace(config, port=held.getsockname()[1])
            serve_one = functools.partial(
                _serve_worker,
                config,
                self._handler,
                self._handler_factory,
                self.core.hooks,
                self.tls_transport,
            )
            address = (config.host, config.port)
            return run_workers(
                self.workers,
                serve_one,
                hub=WorkerHub.running,
                on_ready=None if on_ready is None else functools.partial(on_ready, address),
                restarts=restarts,
                stop_timeout=config.shutdown_grace + 10.0,
            )

    def _on_signal(self, signum: int) -> None:
        if self._signal_stop is None and self._server is not None:
            self.core.stop_reason = signal_name(signum)
            self._signal_stop = self._loop.create_task(self.stop())

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let running calls finish within ``grace``, close with 1001."""
        if self._server is None:
            return
        grace = self.config.shutdown_grace if grace is None else grace
        self._server.close()
        for step in self.core.shutdown(grace):
            deadline = self._loop.time() + step.timeout
            while not step.done() and self._loop.time() < deadline:
                await asyncio.sleep(0.01)
        for session in list(self.core.sessions):
            session.adapter.abort()
        await self._server.wait_closed()
        self._server = None
        if self.bus is not None:
            await self.bus.close()
        self.core.stopped()
        if self._stopped is not None:
            self._stopped.set()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- core hooks ------------------------------------------------------------------------

    def _new_connection(self) -> asyncio.Protocol:
        if not self.core.may_accept():
            return _Turnaway()
        return _Connection(self)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> Any:
        return self._loop.create_task(coroutine).cancel

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
            if conn.flush_scheduled:  # else already written meanwhile
                try:
                    conn.flush()
                except Exception:
                    log.exception("flushing a connection failed; aborting it")
                    conn.abort()


def _serve_worker(
    config: ServerConfig,
    handler: type[Any],
    handler_factory: Any,
    hooks: tuple[ServerHooks, ...],
    tls_transport: str,
    index: int,
) -> None:
    """One worker of :meth:`Server.run_workers` (in its own process)."""
    from ._workers import WorkerBus

    async def main() -> None:
        server = Server(
            config,
            handler,
            handler_factory=handler_factory,
            bus=WorkerBus(),
            tls_transport=tls_transport,
        )
        for h in hooks:
            server.add_hooks(h)
        await server.start()
        notify_ready()
        await server.serve_forever()

    asyncio.run(main())


def _output_ready(session: ServerSession) -> None:
    conn = session.adapter
    if conn is not None:
        conn.output_ready()


def _use_socket_tls(choice: str, loop: asyncio.AbstractEventLoop) -> bool:
    if choice == "socket":
        if not supports_socket_tls(loop):
            raise ValueError(f"tls_transport='socket' needs a selector loop, not {loop!r}")
        return True
    return choice == "auto" and supports_socket_tls(loop)
