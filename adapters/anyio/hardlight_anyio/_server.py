"""The anyio server (asyncio and trio backends): tasks around ``ServerSession``s.

Each server owns a task group, run by a task of the backend itself (an asyncio task or
a trio system task) so that ``await server.start()`` / ``await server.stop()`` work from
anywhere, as do ``async with Server(...)`` and ``await server.serve_forever()``. Each
connection has its own task group: the reader (this connection's task), a writer woken
through an ``anyio.Event`` (everything the core queued during one scheduling round
leaves in one send), a timer task driving ``get_timer()`` / ``handle_timer()``, and one
task per running handler call. Every decision is the core's.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import sniffio
from anyio.streams.tls import TLSListener, TLSStream

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
_READ_ENDED = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)

TopicChange = TopicCreated | TopicRemoved


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
        self._send, self._receive = anyio.create_memory_object_stream[TopicChange | None](
            NOTIFIER_QUEUE_SIZE
        )
        #: notifications lost because nobody read them fast enough
        self.dropped = 0

    def _put(self, change: TopicChange | None) -> None:
        try:
            self._send.send_nowait(change)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.dropped += 1
            log.warning("topic notifier queue full; dropped %s", change)

    async def recv(self) -> TopicChange | None:
        """The next notification, or None once the server stopped."""
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None

    def __aiter__(self) -> AsyncIterator[TopicChange]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[TopicChange]:
        while True:
            change = await self.recv()
            if change is None:
                return
            yield change


class _QuietTLSListener(TLSListener):
    """A TLSListener that logs failed TLS handshakes (scanners, wrong clients) at debug."""

    @staticmethod
    async def handle_handshake_error(exc: BaseException, stream: anyio.abc.AnyByteStream) -> None:
        await anyio.aclose_forcefully(stream)
        if not isinstance(exc, Exception) or isinstance(exc, anyio.get_cancelled_exc_class()):
            raise exc
        log.debug("TLS handshake failed: %r", exc)


def _set_nodelay(stream: anyio.abc.ByteStream) -> None:
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connection:
    """One accepted stream: its session, writer, timer and handler call tasks."""

    def __init__(self, server: Server, stream: anyio.abc.ByteStream) -> None:
        self.server = server
        self.stream = stream
        self.session: ServerSession = server.core.open_session()
        self.session.adapter = self
        self.wake = anyio.Event()  # the writer's: output is queued
        self.timer_wake = anyio.Event()  # the timer's: the deadline moved earlier
        self.armed = math.inf
        self.reading_done = False
        self.writer_done = anyio.Event()
        #: one cancel scope per running handler call
        self.calls: set[anyio.CancelScope] = set()
        self.tg: anyio.abc.TaskGroup | None = None

    async def serve(self) -> None:
        server = self.server
        _set_nodelay(self.stream)
        server._connections.add(self)
        self.session.handle_timer(anyio.current_time())  # starts the handshake clock
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                tg.start_soon(self._writer)
                tg.start_soon(self._timer)
                await self._reader(tg)
                # reading ended: let the writer send what is left (bounded), then stop
                self.reading_done = True
                self.wake.set()
                with anyio.move_on_after(self.session.connection.limits.close_timeout):
                    await self.writer_done.wait()
                tg.cancel_scope.cancel()
        finally:
            self.session.connection_lost()
            server._connections.discard(self)
            with anyio.CancelScope(shield=True):
                await self._close_stream()

    async def _close_stream(self) -> None:
        stream = self.stream
        if isinstance(stream, TLSStream):
            # send our close_notify (the reference's peers expect one), bounded
            with anyio.move_on_after(min(self.session.connection.limits.close_timeout, 1.0)):
                with contextlib.suppress(Exception):
                    await stream.unwrap()
        await anyio.aclose_forcefully(stream)

    async def _reader(self, tg: anyio.abc.TaskGroup) -> None:
        session = self.session
        while True:
            try:
                data = await self.stream.receive(READ_SIZE)
            except _READ_ENDED:
                data = b""
            except Exception as exc:  # TLS errors from a misbehaving peer
                log.debug("connection read failed: %r", exc)
                data = b""
            try:
                calls = session.receive_data(data, anyio.current_time())
            except Exception:
                log.exception("server session failed on input; closing the connection")
                return
            for call in calls:
                if call.never_awaits:
                    self._run_now(call)
                else:
                    tg.start_soon(self._run, call)
            self._rearm()
            if not data or session.finished:
                return

    def _run_now(self, call: HandlerCall) -> None:
        """A handler without any await cannot suspend: run it to its end, no task."""
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

    async def _run(self, call: HandlerCall) -> None:
        with anyio.CancelScope() as scope:
            self.calls.add(scope)
            try:
                value = await call.coroutine
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:
                self.session.complete(call, error=exc)
            else:
                self.session.complete(call, value=value)
            finally:
                self.calls.discard(scope)

    def cancel_calls(self) -> None:
        """Cancel every running handler call of this connection."""
        for scope in list(self.calls):
            scope.cancel()

    async def _writer(self) -> None:
        session = self.session
        try:
            while True:
                await self.wake.wait()
                self.wake = anyio.Event()
                data = session.data_to_send()
                if data:
                    try:
                        await self.stream.send(data)
                    except Exception as exc:  # the peer went away
                        log.debug("connection write failed: %r", exc)
                        session.connection.send_failed()
                        self._end()
                        return
                self._rearm()
                if session.finished:
                    self._end()
                    return
                if self.reading_done and not session.connection.outgoing_size:
                    return
        finally:
            self.writer_done.set()

    async def _timer(self) -> None:
        session = self.session
        while True:
            self.timer_wake = anyio.Event()
            deadline = session.get_timer()
            self.armed = math.inf if deadline is None else deadline
            # lazy: a deadline that moved later lets this fire early, and handle_timer
            # re-checks; one that moved earlier wakes us through _rearm
            with anyio.move_on_after(self.armed - anyio.current_time()):
                await self.timer_wake.wait()
                continue
            session.handle_timer(anyio.current_time())
            self.wake.set()

    def _rearm(self) -> None:
        deadline = self.session.get_timer()
        if deadline is not None and deadline < self.armed:
            self.timer_wake.set()

    def flush_soon(self) -> None:
        """Wake the writer (the core's output hook; coalesces one scheduling round)."""
        self.wake.set()

    def _end(self) -> None:
        if self.tg is not None:
            self.tg.cancel_scope.cancel()


class Server:
    """A HardLight server on anyio: ``Server(config, HandlerClass)``.

    ``async with Server(...) as server:``, or ``await server.start()`` ...
    ``await server.stop()``, or ``await server.serve_forever()``.
    """

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
        self._tg: anyio.abc.TaskGroup | None = None
        self._accepting: anyio.CancelScope | None = None
        self._runner_done: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._running = False
        self._address: tuple[str, int] = (config.host, config.port)

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
        return self._address

    @property
    def port(self) -> int:
        """The bound port."""
        return self._address[1]

    @property
    def connection_count(self) -> int:
        """Open connections (past their TLS handshake)."""
        return len(self._connections)

    async def start(self) -> None:
        """Bind and start accepting (``server.port`` is then the bound port)."""
        if self._running:
            raise HardLightError("the server is already running")
        config = self.config
        listener: anyio.abc.Listener[Any] = await anyio.create_tcp_listener(
            local_host=config.host,
            local_port=config.port,
            backlog=config.backlog,
        )
        sockname = listener.extra(anyio.abc.SocketAttribute.local_address)
        self._address = (str(sockname[0]), int(sockname[1]))
        if config.tls is not None:
            listener = _QuietTLSListener(
                listener,
                config.tls.ssl_context(),
                standard_compatible=False,
                handshake_timeout=self.core.limits.handshake_timeout,
            )
        if self.bus is not None:
            try:
                if sniffio.current_async_library() != "asyncio":
                    raise HardLightError("NatsBus runs on the asyncio backend of anyio only")
                await self.bus.start(self.core)
            except BaseException:
                await anyio.aclose_forcefully(listener)
                raise
        self._stopped = anyio.Event()
        self._runner_done = anyio.Event()
        started = anyio.Event()
        self._running = True
        _spawn_detached(self._runner, listener, started, self._runner_done)
        await started.wait()
        log.info("hardlight server listening on %s:%d", *self._address)

    async def _runner(
        self, listener: anyio.abc.Listener[Any], started: anyio.Event, done: anyio.Event
    ) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._accepting = anyio.CancelScope()
                tg.start_soon(self._accept, listener, self._accepting, tg)
                started.set()
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException:
            log.exception("hardlight server tasks failed")
        finally:
            self._tg = None
            started.set()
            done.set()

    async def _accept(
        self, listener: anyio.abc.Listener[Any], scope: anyio.CancelScope, tg: anyio.abc.TaskGroup
    ) -> None:
        with scope:
            try:
                await listener.serve(self._handle, task_group=tg)
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await listener.aclose()

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        await _Connection(self, stream).serve()

    async def serve_forever(self) -> None:
        """Serve until :meth:`stop` (starting first if needed); cancelling this stops it."""
        if not self._running:
            await self.start()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self.stop()
            raise

    run = serve_forever

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let running calls finish within ``grace``, close with 1001."""
        if not self._running:
            return
        self._running = False
        grace = self.config.shutdown_grace if grace is None else grace
        if self._accepting is not None:
            self._accepting.cancel()
        with anyio.move_on_after(grace):
            while any(conn.calls for conn in self._connections):
                await anyio.sleep(0.01)
        for conn in list(self._connections):
            conn.cancel_calls()
            conn.session.close(1001, "server shutting down")
            conn.flush_soon()
        with anyio.move_on_after(min(grace, 2.0) + 0.5):
            while self._connections:
                await anyio.sleep(0.01)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        if self._runner_done is not None:
            with anyio.move_on_after(5.0):
                await self._runner_done.wait()
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
        with anyio.CancelScope(shield=True):
            await self.stop()

    # -- core hooks ----------------------------------------------------------------------------

    def _on_output(self, session: ServerSession) -> None:
        conn = session.adapter
        if conn is not None:
            conn.flush_soon()

    def _on_topic(self, change: TopicChange) -> None:
        if self.bus is not None:
            self.bus.topic_changed(change)
        if self._notifier is not None:
            self._notifier._put(change)


_background: set[Any] = set()


def _spawn_detached(runner: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Run ``runner(*args)`` as a task of the running backend, outside the caller's scopes.

    On trio a system task (cancelled when the run ends); on asyncio a task kept
    referenced until it ends. ``runner`` must not raise (trio would abort the run).
    """
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(runner, *args)
    else:
        import asyncio

        task = asyncio.get_running_loop().create_task(runner(*args))  # type: ignore[arg-type]
        _background.add(task)
        task.add_done_callback(_background.discard)
