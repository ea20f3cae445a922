"""The threaded server: an accept thread, an I/O thread per connection, one handler loop.

The core is not thread-safe and an emit touches other connections, so every call
into it happens under one lock (``core.lock``: the core holds it during each step
of a handler too, never across an await). Handlers are ``async def``: they run on
one private asyncio loop in its own thread, so a handler may await.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Coroutine
from typing import Any

from hardlight_core import EventEmitter as CoreEventEmitter
from hardlight_core import ServerCore, ServerHooks, ServerSession, TopicCreated, TopicRemoved
from hardlight_support import BlockingChannelReader, ServerConfig, StopSignals, signal_name

from ._pump import SocketPump

__all__ = ["EventEmitter", "Server", "TopicNotifier"]

log = logging.getLogger("hardlight")

POLL = 0.2  # how often the accept thread looks up to notice shutdown


class EventEmitter(CoreEventEmitter):
    """Sends events of one type to topics from application code (thread-safe).

    ``emit(topic, event)`` (the natural, blocking form here; it never waits) is
    ``emit_nowait(topic, event)``."""

    emit = CoreEventEmitter.emit_nowait


class TopicNotifier(BlockingChannelReader[TopicCreated | TopicRemoved]):
    """``TopicCreated`` / ``TopicRemoved`` as they happen: iterate (blocking), or
    ``get(timeout)`` for one; ends when the server stops."""


class _Connection:
    """One accepted socket: its I/O thread (TLS handshake, then the pump) and session."""

    def __init__(self, server: Server, sock: socket.socket, peer: Any) -> None:
        self.server = server
        self.sock = sock
        with server.lock:
            self.session: ServerSession = server.core.open_session()
        self.session.adapter = self
        self.session.peer = peer
        self.pump: SocketPump | None = None
        self.thread = threading.Thread(target=self._serve, name="hardlight-conn", daemon=True)

    def _serve(self) -> None:
        server = self.server
        try:
            if server._ssl is not None:
                self.sock.settimeout(server.core.limits.handshake_timeout)
                self.sock = server._ssl.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake failed: %s", exc)
            self._end()
            return
        lock, session = server.lock, self.session

        def on_data(data: bytes, now: float) -> bool:
            with lock:
                session.receive_data(data, now)
                return not session.finished

        def on_timer(now: float) -> bool:
            with lock:
                session.handle_timer(now)
                return not session.finished

        def locked(function: Any) -> Any:
            def call() -> Any:
                with lock:
                    return function()

            return call

        self.pump = SocketPump(
            self.sock,
            on_data=on_data,
            on_timer=on_timer,
            get_timer=locked(session.get_timer),
            take_output=locked(session.data_to_send),
            finished=locked(lambda: session.finished),
            on_end=self._end,
            name="hardlight-conn",
        )
        self.pump.run()

    def wake(self) -> None:
        """Ask the I/O thread to write what the session has queued (any thread)."""
        if self.pump is not None:
            self.pump.wake()

    def _end(self) -> None:
        with self.server.lock:
            self.session.connection_lost()
        with contextlib.suppress(OSError):
            self.sock.close()


class Server:
    """A HardLight server on threads: ``Server(config, HandlerClass)``."""

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
        #: an event bus spanning servers (``hardlight_asyncio.NatsBus`` runs on the handler loop)
        self.bus = bus
        #: guards the core: every call into it holds this lock
        self.lock = threading.RLock()
        self.core = ServerCore.from_config(config, handler, handler_factory, hooks)
        self.core.lock = self.lock
        self.core.inline_calls = False  # handlers run on the handler loop, as documented
        self.core.clock = time.monotonic
        self.core.spawn = self._spawn
        self.core.on_output = _output_ready
        if bus is not None:
            self.core.on_topic = bus.topic_changed
        self._listener: socket.socket | None = None
        self._ssl = config.tls.ssl_context() if config.tls is not None else None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._handler_loop = asyncio.new_event_loop()

    def event_emitter(self, event_type: Any) -> EventEmitter:
        """An emitter for events of ``event_type`` (take as many as you like)."""
        return EventEmitter(self.core, event_type)

    def topic_notifier(self) -> TopicNotifier:
        """The one receiver of topic Created/Removed notifications."""
        with self.lock:
            return TopicNotifier(self.core.topic_notifications(), self.lock)

    def add_hooks(self, hooks: ServerHooks) -> None:
        """Add callbacks for connections and calls (metrics, tracing); see ServerHooks.
        They run on the server's threads, holding its lock: keep them short."""
        with self.lock:
            self.core.add_hooks(hooks)

    def remove_hooks(self, hooks: ServerHooks) -> None:
        """Remove callbacks added by :meth:`add_hooks` or ``Server(hooks=...)``."""
        with self.lock:
            self.core.remove_hooks(hooks)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on."""
        if self._listener is None:
            return (self.config.host, self.config.port)
        host, port = self._listener.getsockname()[:2]
        return (host, port)

    @property
    def port(self) -> int:
        """The bound port."""
        return self.address[1]

    @property
    def connection_count(self) -> int:
        """Open sockets (including those still in their handshake)."""
        return self.core.connection_count

    def start(self) -> None:
        """Bind and start accepting (returns once listening)."""
        listener = socket.create_server(
            (self.config.host, self.config.port),
            backlog=self.config.backlog,
            reuse_port=self.config.reuse_port,
        )
        listener.settimeout(POLL)
        self._listener = listener
        self._stopping.clear()
        self.core.accepting = True
        loop_thread = threading.Thread(
            target=self._handler_loop.run_forever, name="hardlight-handlers", daemon=True
        )
        accept_thread = threading.Thread(
            target=self._accept_loop, name="hardlight-accept", daemon=True
        )
        self._threads = [loop_thread, accept_thread]
        loop_thread.start()
        if self.bus is not None:
            try:
                asyncio.run_coroutine_threadsafe(
                    self.bus.start(self.core, lock=self.lock), self._handler_loop
                ).result(30)
            except BaseException:
                self._handler_loop.call_soon_threadsafe(self._handler_loop.stop)
                loop_thread.join(5)
                listener.close()
                self._listener = None
                self._handler_loop = asyncio.new_event_loop()
                raise
        accept_thread.start()
        with self.lock:
            self.core.started(*self.address)

    def serve_forever(self) -> None:
        """Run until :meth:`stop`, SIGTERM or SIGINT (starting first if needed).

        In the main thread, SIGTERM and SIGINT stop the server gracefully (``stop()``
        with the configured grace; noticed within 0.2 s) and this returns; the previous
        handlers are put back on return. A second signal acts as it would have without
        the server.
        """
        if self._listener is None:
            self.start()
        with StopSignals() as signals:  # the handler only records: we poll it here
            while not self._stopping.wait(POLL):
                if signals.received is not None:
                    with self.lock:
                        self.core.stop_reason = signal_name(signals.received)
                    self.stop()
                    break

    run = serve_forever

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                sock, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                accept = self.core.may_accept()
            if not accept:  # over the pending-handshake bound
                with contextlib.suppress(OSError):
                    sock.close()
                continue
            _Connection(self, sock, peer).thread.start()

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let running calls finish within ``grace``, close with 1001."""
        if self._listener is None:
            return
        grace = self.config.shutdown_grace if grace is None else grace
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        steps = self.core.shutdown(grace)
        while True:
            with self.lock:
                step = next(steps, None)
            if step is None:
                break
            deadline = time.monotonic() + step.timeout
            while time.monotonic() < deadline:
                with self.lock:
                    if step.done():
                        break
                time.sleep(0.01)
        with self.lock:
            pumps = [s.adapter.pump for s in self.core.sessions if s.adapter.pump is not None]
        for pump in pumps:
            pump.stop()
        for pump in pumps:
            pump.thread.join(2.0)
        if self.bus is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.bus.close(), self._handler_loop).result(5)
        self._handler_loop.call_soon_threadsafe(self._handler_loop.stop)
        for thread in self._threads:
            thread.join(5.0)
        self._handler_loop.close()
        self._handler_loop = asyncio.new_event_loop()
        self._listener = None
        with self.lock:
            self.core.stopped()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._handler_loop).cancel


def _output_ready(session: ServerSession) -> None:
    conn = session.adapter
    if conn is not None:
        conn.wake()
