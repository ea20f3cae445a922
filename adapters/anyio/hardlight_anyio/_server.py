"""The anyio server (asyncio and trio backends): tasks around ``ServerSession``s.

Structured: the server's tasks live in a task group opened by ``async with
Server(...)`` (or ``serve_forever()``); each connection has a reader loop, a writer
task woken through an ``anyio.Event`` (so everything queued in one scheduling
round leaves in one send), and one task per running handler call.
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
from anyio.streams.tls import TLSListener

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

__all__ = ["EventEmitter", "Server", "TopicNotifier"]

log = logging.getLogger("hardlight")

NOTIFIER_QUEUE_SIZE = 10_000
READ_SIZE = 65536


class EventEmitter:
    """Sends events of one type to topics, from application code (many may exist)."""

    def __init__(self, core: ServerCore, event_type: Any) -> None:
        self._core = core
        self._event_type = event_type

    async def emit(self, topic: Topic, event: Any) -> int:
        """Queue ``event`` to every connection subscribed to ``topic``; returns how many."""
        return self._core.emit(topic, encode(event, self._event_type))


class TopicNotifier:
    """``TopicCreated`` / ``TopicRemoved`` as they happen (an async iterator; bounded)."""

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[
            "TopicCreated | TopicRemoved | None"
        ](NOTIFIER_QUEUE_SIZE)
        self.dropped = 0

    def _put(self, change: TopicCreated | TopicRemoved | None) -> None:
        try:
            self._send.send_nowait(change)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.dropped += 1

    async def recv(self) -> TopicCreated | TopicRemoved | None:
        """The next notification, or None once the server stopped."""
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            return None

    def __aiter__(self) -> AsyncIterator[TopicCreated | TopicRemoved]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[TopicCreated | TopicRemoved]:
        while True:
            change = await self.recv()
            if change is None:
                return
            yield change


class _Connection:
    """One accepted stream: its session, writer wake-up and handler tasks."""

    def __init__(self, server: Server, stream: anyio.abc.ByteStream) -> None:
        self.server = server
        self.stream = stream
        self.session: ServerSession = server.core.open_session()
        self.session.adapter = self
        self.wake = anyio.Event()
        self.calls = 0
        self.scope: anyio.CancelScope | None = None
        self.closed = False

    async def serve(self) -> None:
        server = self.server
        raw = self.stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server._connections.add(self)
        try:
            async with anyio.create_task_group() as tg:
                self.scope = tg.cancel_scope
                tg.start_soon(self._writer)
                tg.start_soon(self._timers)
                await self._reader(tg)
                # reading is over: let the writer send what is left, then stop
                self.closed = True
                self.wake.set()
        finally:
            self.session.connection_lost()
            server._connections.discard(self)
            with contextlib.suppress(Exception):
                await anyio.aclose_forcefully(self.stream)

    async def _reader(self, tg: anyio.abc.TaskGroup) -> None:
        while not self.session.finished:
            try:
                data = await self.stream.receive(READ_SIZE)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ):
                data = b""
            except Exception as exc:  # TLS errors from a misbehaving peer
                log.debug("connection read failed: %s", exc)
                data = b""
            calls = self.session.receive_data(data, anyio.current_time())
            for call in calls:
                self.calls += 1
                tg.start_soon(self._run, call)
            self.wake.set()
            if not data:
                return

    async def _run(self, call: HandlerCall) -> None:
        try:
            value = await call.coroutine
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:
            self.session.complete(call, error=exc)
        else:
            self.session.complete(call, value=value)
        finally:
            self.calls -= 1
        self.wake.set()

    async def _writer(self) -> None:
        while True:
            await self.wake.wait()
            self.wake = anyio.Event()
            data = self.session.data_to_send()
            if data:
                try:
                    await self.stream.send(data)
                except Exception as exc:  # the peer went away
                    log.debug("connection write failed: %s", exc)
                    self.session.connection.send_failed()
                    self._cancel()
                    return
            if self.session.finished or (self.closed and not self.calls):
                self._cancel()
                return

    async def _timers(self) -> None:
        while True:
            deadline = self.session.get_timer()
            now = anyio.current_time()
            await anyio.sleep(max(0.0, min((deadline or now + 1.0) - now, 1.0)))
            self.session.handle_timer(anyio.current_time())
            self.wake.set()

    def flush_soon(self) -> None:
        """Wake the writer (called from the core's output hook)."""
        self.wake.set()

    def _cancel(self) -> None:
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
    ) -> None:
        self.config = config
        #: an event bus spanning servers (``hardlight_asyncio.NatsBus``: asyncio backend only)
        self.bus = bus
        self.core = ServerCore.from_config(config, handler, handler_factory)
        self.core.on_output = self._on_output
        self.core.on_topic = self._on_topic
        self._notifier: TopicNotifier | None = None
        self._connections: set[_Connection] = set()
        self._listener: Any = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._accepting: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None
        self._address: tuple[str, int] = (config.host, config.port)

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
        return self._address

    @property
    def port(self) -> int:
        """The bound port."""
        return self._address[1]

    @property
    def connection_count(self) -> int:
        """Open connections."""
        return len(self._connections)

    async def __aenter__(self) -> Server:
        self._stopped = anyio.Event()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        listener = await anyio.create_tcp_listener(
            local_host=self.config.host, local_port=self.config.port, backlog=self.config.backlog
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
        log.info("hardlight server listening on %s:%d", *self._address)
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
        await _Connection(self, stream).serve()

    async def serve_forever(self) -> None:
        """Serve until :meth:`stop` is called (or this task is cancelled)."""
        async with self:
            assert self._stopped is not None
            await self._stopped.wait()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let running calls finish within ``grace``, close with 1001."""
        grace = self.config.shutdown_grace if grace is None else grace
        if self._accepting is not None:
            self._accepting.cancel()
        with anyio.move_on_after(grace):
            while any(c.calls for c in self._connections):
                await anyio.sleep(0.01)
        for conn in list(self._connections):
            conn.session.close(1001, "server shutting down")
            conn.wake.set()
        with anyio.move_on_after(min(grace, 2.0) + 0.5):
            while self._connections:
                await anyio.sleep(0.01)
        for conn in list(self._connections):
            conn._cancel()
        self._listener = None
        if self._notifier is not None:
            self._notifier._put(None)
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

    def _on_output(self, session: ServerSession) -> None:
        conn = session.adapter
        if conn is not None:
            conn.flush_soon()

    def _on_topic(self, change: TopicCreated | TopicRemoved) -> None:
        if self.bus is not None:
            self.bus.topic_changed(change)
        if self._notifier is not None:
            self._notifier._put(change)
