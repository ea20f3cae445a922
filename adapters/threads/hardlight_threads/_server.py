"""The threaded server: an accept thread, a reader thread per connection, one handler loop.

The core is not thread-safe and an emit touches other connections, so every call
into ``ServerCore``/``ServerSession`` happens under one lock. Handlers are
``async def``: they run on one private asyncio loop in its own thread, so a
handler may await; most finish in their first step and are answered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from hardlight_core import (
    HandlerCall,
    HardLightError,
    ServerConfig,
    ServerCore,
    ServerSession,
    Topic,
    TopicCreated,
    TopicRemoved,
    encode,
)

from ._pump import SocketPump

__all__ = ["EventEmitter", "Server", "TopicNotifier"]

log = logging.getLogger("hardlight")

NOTIFIER_QUEUE_SIZE = 10_000
POLL = 0.2  # how often the accept thread looks up to notice shutdown


class EventEmitter:
    """Sends events of one type to topics from application code (thread-safe)."""

    def __init__(self, server: Server, event_type: Any) -> None:
        self._server = server
        self._event_type = event_type

    def emit(self, topic: Topic, event: Any) -> int:
        """Queue ``event`` to every connection subscribed to ``topic``; returns how many."""
        payload = encode(event, self._event_type)
        with self._server._lock:
            count = self._server.core.emit(topic, payload)
        self._server._flush_dirty(None)
        return count


class TopicNotifier:
    """``TopicCreated`` / ``TopicRemoved`` as they happen: iterate, or ``get(timeout)``."""

    def __init__(self) -> None:
        self._queue: queue.Queue[TopicCreated | TopicRemoved | None] = queue.Queue(
            NOTIFIER_QUEUE_SIZE
        )
        self.dropped = 0

    def _put(self, change: TopicCreated | TopicRemoved | None) -> None:
        try:
            self._queue.put_nowait(change)
        except queue.Full:
            self.dropped += 1
            log.warning("topic notifier queue full; dropped %s", change)

    def get(self, timeout: float | None = None) -> TopicCreated | TopicRemoved | None:
        """The next notification; None on timeout or once the server stopped."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self) -> Iterator[TopicCreated | TopicRemoved]:
        while True:
            change = self._queue.get()
            if change is None:
                return
            yield change


class _Connection:
    """One accepted socket: its I/O thread (TLS handshake, then the pump) and its session."""

    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.session: ServerSession = server.core.open_session()
        self.session.adapter = self
        self.futures: dict[int, Future[Any]] = {}
        self.pump: SocketPump | None = None
        self.thread = threading.Thread(target=self._serve, name="hardlight-conn", daemon=True)

    def _serve(self) -> None:
        server = self.server
        sock = self.sock
        try:
            if server._ssl is not None:
                sock.settimeout(server._limits.handshake_timeout)
                sock = server._ssl.wrap_socket(sock, server_side=True)
                self.sock = sock
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake failed: %s", exc)
            self._finish()
            return
        self.pump = SocketPump(
            sock,
            on_data=self._on_data,
            on_tick=self._on_tick,
            take_output=self._take_output,
            on_end=self._finish,
            name="hardlight-conn",
        )
        self.pump.run()

    def _on_data(self, data: bytes) -> bool:
        server = self.server
        with server._lock:
            calls = self.session.receive_data(data, time.monotonic())
        for call in calls:
            self._run(call)
        server._flush_dirty(self)
        return bool(data) and not self.session.finished

    def _on_tick(self) -> bool:
        with self.server._lock:
            self.session.handle_timer(time.monotonic())
            return not self.session.finished

    def _take_output(self) -> bytes:
        with self.server._lock:
            return self.session.data_to_send()

    def _run(self, call: HandlerCall) -> None:
        server = self.server
        future = asyncio.run_coroutine_threadsafe(
            _Locked(call.coroutine, server._lock).run(), server._handler_loop
        )
        self.futures[call.call_id] = future  # before the callback, which may run at once

        def done(f: Future[Any], call: HandlerCall = call) -> None:
            self.futures.pop(call.call_id, None)
            if f.cancelled():
                with contextlib.suppress(Exception):
                    call.coroutine.close()
                return
            with server._lock:
                exc = f.exception()
                if exc is not None:
                    self.session.complete(call, error=exc)
                else:
                    self.session.complete(call, value=f.result())
            server._flush_dirty(None)

        future.add_done_callback(done)

    def flush(self) -> None:
        """Ask the I/O thread to write what the session has queued (any thread)."""
        if self.pump is not None:
            self.pump.wake()

    def _finish(self) -> None:
        for future in list(self.futures.values()):
            future.cancel()
        with self.server._lock:
            self.session.connection_lost()
        with contextlib.suppress(OSError):
            self.sock.close()
        self.server._connections.discard(self)


class _Locked:
    """Drives a handler coroutine on the handler loop, holding the core lock during each
    step (handlers call into the core: subscribe, emit, state) but never across an await."""

    def __init__(self, coroutine: Any, lock: threading.RLock) -> None:
        self.coroutine = coroutine
        self.lock = lock

    async def run(self) -> Any:
        return await self

    def __await__(self) -> Any:
        coroutine = self.coroutine
        value: Any = None
        error: BaseException | None = None
        while True:
            with self.lock:
                try:
                    if error is not None:
                        yielded = coroutine.throw(error)
                    else:
                        yielded = coroutine.send(value)
                except StopIteration as done:
                    return done.value
            try:
                value = yield yielded
                error = None
            except BaseException as exc:
                value, error = None, exc


class Server:
    """A HardLight server on threads: ``Server(config, HandlerClass)``."""

    def __init__(
        self,
        config: ServerConfig,
        handler: type[Any],
        *,
        handler_factory: Any = None,
        bus: Any = None,
    ) -> None:
        self.config = config
        #: an event bus spanning servers (``hardlight_asyncio.NatsBus`` runs on the handler loop)
        self.bus = bus
        self.core = ServerCore.from_config(config, handler, handler_factory)
        self._lock = threading.RLock()
        self._dirty: set[ServerSession] = set()
        self.core.on_output = self._dirty.add
        self.core.on_topic = self._on_topic
        self._notifier: TopicNotifier | None = None
        self._connections: set[_Connection] = set()
        self._listener: socket.socket | None = None
        self._ssl = config.tls.ssl_context() if config.tls is not None else None
        self._limits = self.core.limits
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._handler_loop = asyncio.new_event_loop()

    def event_emitter(self, event_type: Any) -> EventEmitter:
        """An emitter for events of ``event_type`` (take as many as you like)."""
        return EventEmitter(self, event_type)

    def topic_notifier(self) -> TopicNotifier:
        """The one receiver of topic Created/Removed notifications."""
        if self._notifier is not None:
            raise HardLightError("topic_notifier() may be called only once per server")
        self._notifier = TopicNotifier()
        return self._notifier

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
        return len(self._connections)

    def start(self) -> None:
        """Bind and start accepting (returns once listening)."""
        listener = socket.create_server(
            (self.config.host, self.config.port), backlog=self.config.backlog, reuse_port=False
        )
        listener.settimeout(POLL)
        self._listener = listener
        self._stopping.clear()
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
                    self.bus.start(
                        self.core, lock=self._lock, after_deliver=lambda: self._flush_dirty(None)
                    ),
                    self._handler_loop,
                ).result(30)
            except BaseException:
                self._handler_loop.call_soon_threadsafe(self._handler_loop.stop)
                loop_thread.join(5)
                listener.close()
                self._listener = None
                self._handler_loop = asyncio.new_event_loop()
                raise
        accept_thread.start()
        log.info("hardlight server listening on %s:%d", *self.address)

    def serve_forever(self) -> None:
        """Run until :meth:`stop` (starting first if needed)."""
        if self._listener is None:
            self.start()
        while not self._stopping.wait(POLL):
            pass

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            self._connections.add(conn)
            conn.thread.start()

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let running calls finish within ``grace``, close with 1001."""
        if self._listener is None:
            return
        grace = self.config.shutdown_grace if grace is None else grace
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        deadline = time.monotonic() + grace
        while any(c.futures for c in list(self._connections)) and time.monotonic() < deadline:
            time.sleep(0.01)
        for conn in list(self._connections):
            for future in list(conn.futures.values()):
                future.cancel()
            with self._lock:
                conn.session.close(1001, "server shutting down")
            conn.flush()
        close_deadline = time.monotonic() + min(grace, 2.0) + 0.5
        while self._connections and time.monotonic() < close_deadline:
            time.sleep(0.01)
        for conn in list(self._connections):
            if conn.pump is not None:
                conn.pump.stop()
        for conn in list(self._connections):
            conn.thread.join(2.0)
        if self.bus is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.bus.close(), self._handler_loop).result(5)
        self._handler_loop.call_soon_threadsafe(self._handler_loop.stop)
        for thread in self._threads:
            thread.join(5.0)
        self._handler_loop.close()
        self._handler_loop = asyncio.new_event_loop()
        self._listener = None
        if self._notifier is not None:
            self._notifier._put(None)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _flush_dirty(self, current: _Connection | None) -> None:
        """Wake the I/O threads of connections with output (the current one writes anyway)."""
        with self._lock:
            dirty = list(self._dirty)
            self._dirty.clear()
        for session in dirty:
            conn = session.adapter
            if conn is not None and conn is not current:
                conn.flush()

    def _on_topic(self, change: TopicCreated | TopicRemoved) -> None:
        if self.bus is not None:
            self.bus.topic_changed(change)
        if self._notifier is not None:
            self._notifier._put(change)
