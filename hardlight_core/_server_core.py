"""The server driver: connections, handlers, state sync, topics and shutdown, without I/O.

Every decision a HardLight server takes lives here, so every adapter behaves the
same. An adapter supplies only what needs a runtime:

* bytes: :meth:`ServerCore.open_session` per accepted socket; feed what it reads to
  :meth:`ServerSession.receive_data`; write :meth:`ServerSession.data_to_send`
  when ``ServerCore.on_output`` names the session; close the socket once
  :attr:`ServerSession.finished`; call :meth:`ServerSession.connection_lost` when
  the socket is gone;
* coroutines: ``ServerCore.spawn(coroutine)`` runs one to its end on the adapter's
  runtime and returns a function that cancels it (handler calls; see
  :meth:`HandlerCall.run`);
* time: :meth:`ServerSession.get_timer` / :meth:`ServerSession.handle_timer`, and
  ``ServerCore.clock`` (the adapter's monotonic clock, for call and connection durations).

Operations are decided here too, so every adapter reports the same: DEBUG logs (logger
"hardlight") for accepted and refused handshakes, calls (method, id, outcome, duration)
and closes (code, reason); INFO for start (:meth:`ServerCore.started`), the graceful
stop and its end; and the :class:`~._hooks.ServerHooks` callbacks for metrics.

Containment: nothing a handler does (raise, return a value that does not encode,
leave state that does not archive, a signature or decorator that fails) reaches
the transport. The call is answered ``HandlerPanicked`` (``ServerEncodeError`` for
a return value that does not encode), logged with the method and the error, and
the connection and every other one go on. A failure of the server itself closes
only its connection, with 1011.

Ordering guarantees the reference lacks: a call's state change is queued before
its response; a subscription made by a handler is in effect for the very next
emit; a closing connection is unsubscribed from everything.
"""

from __future__ import annotations

import contextlib
import contextvars
import dis
import inspect
import logging
import types
from collections.abc import Callable, Coroutine, Generator, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from ._channel import Channel
from ._codec import encode
from ._config import HandshakeInfo, Refuse, ServerSettings
from ._conn_state import StateTracker
from ._connection import MessageConnection, ServerConnection, server_frame
from ._envelope import NewEvent, StateUpdate, Topic, TopicLike, as_topic, pack
from ._errors import LocalProtocolError, ProtocolError, RpcHandlerError
from ._events import CallReceived, ConnectionClosed, HandshakeRequested
from ._hooks import CallInfo, ConnectionInfo, ServerHooks
from ._limits import Limits
from ._service import ServiceSpec, outcome_to_output
from ._state import ConnectionState
from ._topics import EventSwitch, TopicCreated, TopicRemoved
from ._types import Err, Ok

__all__ = [
    "EventEmitter",
    "HandlerCall",
    "ServerCore",
    "ServerSession",
    "ShutdownStep",
]

log = logging.getLogger("hardlight")
DEBUG = logging.DEBUG

TopicChange = TopicCreated | TopicRemoved

NOTIFIER_QUEUE_SIZE = 10_000

Cancel = Callable[[], object]
Spawn = Callable[[Coroutine[Any, Any, None]], Cancel]


@dataclass(slots=True, eq=False)
class HandlerCall:
    """One call for a handler: ``coroutine`` is the handler's, :meth:`run` serves it whole."""

    session: ServerSession
    call_id: int
    method: str
    coroutine: Coroutine[Any, Any, Any]
    cancel: Cancel | None = field(default=None)
    #: what the hooks and logs see (None when nothing observes calls)
    info: CallInfo | None = field(default=None)
    #: the handler is a plain ``async def`` with no await in its body: it cannot suspend
    never_suspends: bool = field(default=False)

    async def run(self) -> None:
        """Await the handler and report its outcome (whatever it raises is contained)."""
        session = self.session
        lock = session.core.lock
        try:
            if lock is None:
                value = await self.coroutine
            else:
                value = await _StepsUnderLock(self.coroutine, lock)
        except Exception as exc:
            error: BaseException | None = exc
            value = None
        except BaseException:  # cancelled (shutdown, connection gone): nobody to answer
            session.running.pop(self.call_id, None)
            if lock is None:
                session._call_ended(self.info, "cancelled")
            else:
                with lock:
                    session._call_ended(self.info, "cancelled")
            raise
        else:
            error = None
        if lock is None:
            session.complete(self, value=value, error=error)
        else:
            with lock:
                session.complete(self, value=value, error=error)

    def run_inline(self) -> None:
        """Drive the handler to its end at once, for loops that run only handlers that
        never wait (custom loops, replay); one that suspends answers HandlerPanicked."""
        try:
            self.coroutine.send(None)
        except StopIteration as done:
            self.session.complete(self, value=done.value)
        except Exception as exc:
            self.session.complete(self, error=exc)
        else:
            self.coroutine.close()
            self.session.complete(
                self, error=RuntimeError("the handler awaited, and this loop runs it inline")
            )


class _StepsUnderLock:
    """Drives a coroutine holding ``lock`` during each step, never across an await (the
    threads adapter: handlers touch the core, which its I/O threads share)."""

    __slots__ = ("coroutine", "lock")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], lock: AbstractContextManager[Any]):
        self.coroutine = coroutine
        self.lock = lock

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine = self.coroutine
        value: Any = None
        error: BaseException | None = None
        while True:
            with self.lock:
                try:
                    yielded = coroutine.throw(error) if error is not None else coroutine.send(value)
                except StopIteration as done:
                    return done.value
            try:
                value, error = (yield yielded), None
            except BaseException as exc:
                value, error = None, exc


@dataclass(frozen=True, slots=True)
class ShutdownStep:
    """One wait of a graceful stop: until ``done()`` or ``timeout`` seconds, whichever first."""

    what: str
    done: Callable[[], bool]
    timeout: float


class ServerCore:
    """Everything a HardLight server decides, for any number of connections."""

    def __init__(
        self,
        handler_class: type[Any],
        *,
        limits: Limits | None = None,
        max_connections: int = 10_000,
        allowed_origins: frozenset[str] | None = None,
        authenticate: Callable[[HandshakeInfo], Any] | None = None,
        handler_factory: Callable[[], Any] | None = None,
        hooks: ServerHooks | None = None,
    ) -> None:
        self.spec = ServiceSpec.of(handler_class)
        self.service_name: str = self.spec.service.__name__
        self.handler_class = handler_class
        self.handler_factory = handler_factory or handler_class
        #: run calls whose handler cannot suspend at once, in the read that brought them
        #: (their own context copy; no task): adapters whose handlers must run elsewhere
        #: (the threads server's handler loop) turn it off
        self.inline_calls = True
        self._never_suspend = {
            m.name: function
            for m in self.spec.methods
            if (function := handler_class.__dict__.get(m.name, None)) is not None
            and cannot_suspend(function)
        }
        self.limits = limits or Limits()
        self.max_connections = max_connections
        self.allowed_origins = allowed_origins
        self.authenticate = authenticate
        self.switch: EventSwitch[ServerSession] = EventSwitch()
        #: connections whose socket the adapter still holds (handshaking ones included)
        self.sessions: set[ServerSession] = set()
        #: runs a coroutine on the adapter's runtime, returns its cancel function; without
        #: one, ``receive_data`` returns the calls for the caller to run
        self.spawn: Spawn | None = None
        #: held around every step of a handler (threads adapter); None on event loops
        self.lock: AbstractContextManager[Any] | None = None
        #: called with a session whose outgoing buffer became non-empty
        self.on_output: Callable[[ServerSession], None] = _ignore
        #: called with every TopicCreated / TopicRemoved (after the notifier got it)
        self.on_topic: Callable[[TopicChange], None] = _ignore
        #: called with every event emitted on this node (an event bus publishes it)
        self.on_emit: Callable[[Topic, bytes], None] = _ignore_emit
        #: the adapter's monotonic clock in seconds (durations in logs and hooks); None:
        #: no durations
        self.clock: Callable[[], float] | None = None
        #: why the server is stopping, for the log (e.g. "SIGTERM"; None: stop() was called)
        self.stop_reason: str | None = None
        self.hooks: tuple[ServerHooks, ...] = ()
        self.events_emitted = 0
        self.accepting = True
        self._notifier: Channel[TopicChange] | None = None
        self._open_sessions = 0
        if hooks is not None:
            self.add_hooks(hooks)

    @classmethod
    def from_config(
        cls,
        config: ServerSettings,
        handler_class: type[Any],
        handler_factory: Any = None,
        hooks: ServerHooks | None = None,
    ) -> ServerCore:
        """The engine for a server configured by ``config`` (what every adapter builds)."""
        return cls(
            handler_class,
            limits=config.limits,
            max_connections=config.max_connections,
            allowed_origins=config.allowed_origins,
            authenticate=config.authenticate,
            handler_factory=handler_factory,
            hooks=hooks,
        )

    # -- operations: hooks, clock, start/stop logs ---------------------------------------------

    def add_hooks(self, hooks: ServerHooks) -> None:
        """Add callbacks for connections and calls (see :class:`ServerHooks`); any number."""
        if not isinstance(hooks, ServerHooks):
            raise TypeError(f"add_hooks takes a ServerHooks, not {type(hooks).__name__}")
        self.hooks = (*self.hooks, hooks)

    def remove_hooks(self, hooks: ServerHooks) -> None:
        """Remove callbacks added by :meth:`add_hooks` (the same object)."""
        self.hooks = tuple(h for h in self.hooks if h is not hooks)

    def now(self) -> float | None:
        """The adapter's clock, or None without one."""
        clock = self.clock
        return clock() if clock is not None else None

    def _notify(self, name: str, info: CallInfo | ConnectionInfo) -> None:
        for hooks in self.hooks:
            hook = getattr(hooks, name)
            if hook is None:
                continue
            try:
                hook(info)
            except Exception:
                log.exception("a server hook (%s) raised; ignored", name)

    def _observing_calls(self) -> bool:
        return bool(self.hooks) or log.isEnabledFor(DEBUG)

    def started(self, host: str, port: int) -> None:
        """The adapter is listening (logs it at INFO)."""
        self.stop_reason = None
        log.info("hardlight server (%s) listening on %s:%d", self.service_name, host, port)

    # -- connections -------------------------------------------------------------------------

    def may_accept(self) -> bool:
        """Whether a new socket may be taken: False (close it at once) when
        ``Limits.max_pending_handshakes`` sockets are still in their handshake."""
        pending = len(self.sessions) - self._open_sessions
        if pending < self.limits.max_pending_handshakes:
            return True
        log.debug("refused a socket: %d handshakes pending", pending)
        return False

    def open_session(self) -> ServerSession:
        """A new connection (its handshake not yet read); check :meth:`may_accept` first."""
        session = ServerSession(self, ServerConnection(limits=self.limits))
        self.sessions.add(session)
        return session

    def open_message_session(
        self,
        path: str,
        headers: tuple[tuple[bytes, bytes], ...],
        origin: str | None,
        compression_level: int,
        peer: Any = None,
    ) -> ServerSession:
        """A connection whose WebSocket handshake and framing something else does (ASGI).

        The handshake rules run at once: if ``session.connection.refusal`` is set, answer
        the upgrade with that status and reason (and forget the session); otherwise
        accept, feed messages to :meth:`ServerSession.receive_message` and send
        :meth:`ServerSession.messages_to_send`.
        """
        request = HandshakeRequested(path, headers, origin, compression_level)
        session = ServerSession(self, MessageConnection(request, self.limits))
        session.peer = peer
        self.sessions.add(session)
        session._input(None, None)
        if session.connection.state.ended:
            self.sessions.discard(session)
        return session

    @property
    def open_sessions(self) -> int:
        """How many connections passed the handshake and have not ended."""
        return self._open_sessions

    @property
    def connection_count(self) -> int:
        """Sockets the server holds, handshaking and closing ones included."""
        return len(self.sessions)

    @property
    def running_calls(self) -> int:
        """Handler calls started and not finished, over every connection."""
        return sum(len(s.running) for s in self.sessions)

    # -- events and topics -------------------------------------------------------------------

    def event_emitter(self, event_type: Any) -> EventEmitter:
        """An emitter of events of ``event_type`` (take as many as you like)."""
        return EventEmitter(self, event_type)

    def topic_notifications(self) -> Channel[TopicChange]:
        """The one channel of ``TopicCreated`` / ``TopicRemoved`` (bounded; closed at stop)."""
        if self._notifier is not None:
            raise LocalProtocolError("topic_notifier() may be called only once per server")
        self._notifier = Channel(NOTIFIER_QUEUE_SIZE, "topic notifier queue")
        return self._notifier

    def emit(self, topic: TopicLike, payload: bytes) -> int:
        """Send an event (an rkyv archive) to every connection subscribed to ``topic``
        (a Topic, str or bytes: :func:`~hardlight_core.as_topic`).

        The message is packed and framed once per compression level in use, not once
        per connection. Returns how many local connections it was queued for; the
        ``on_emit`` hook then hands it to an event bus for the other nodes.
        """
        topic = as_topic(topic)
        count = self.deliver(topic, payload)
        self.on_emit(topic, payload)
        return count

    def deliver(self, topic: TopicLike, payload: bytes) -> int:
        """Deliver an event to this node's subscribers only (events from a bus)."""
        topic = as_topic(topic)
        subscribers = self.switch.subscribers(topic)
        if not subscribers:
            return 0
        packs: dict[int, bytes] = {}
        frames: dict[int, bytes] = {}
        event = NewEvent(topic, payload)
        count = 0
        for session in list(subscribers):
            connection = session.connection
            level = connection.compression_level
            packed = packs.get(level)
            if packed is None:
                packed = packs[level] = pack(event, level)
            if connection.framed:
                frame = frames.get(level)
                if frame is None:
                    frame = frames[level] = server_frame(packed)
                queued = session.queue_frame(frame)
            else:
                queued = session.queue_packed(packed)
            if queued:
                count += 1
        self.events_emitted += count
        return count

    def subscribe(self, session: ServerSession, topic: TopicLike) -> None:
        """Subscribe a connection to a topic (reports ``TopicCreated`` if it is new)."""
        topic = as_topic(topic)
        self._topic_changed(self.switch.subscribe(session, topic))

    def unsubscribe(self, session: ServerSession, topic: TopicLike) -> None:
        """Unsubscribe a connection (reports ``TopicRemoved`` if it was the last)."""
        topic = as_topic(topic)
        self._topic_changed(self.switch.unsubscribe(session, topic))

    def _topic_changed(self, change: TopicChange | None) -> None:
        if change is None:
            return
        if self._notifier is not None:
            self._notifier.put(change)
        self.on_topic(change)

    # -- stopping ----------------------------------------------------------------------------

    def shutdown(self, grace: float) -> Iterator[ShutdownStep]:
        """A graceful stop as steps for the adapter to wait on, one after the other.

        New handshakes are refused (503) at once; running calls get ``grace`` seconds
        to finish; then the rest are cancelled and every connection is closed with
        1001, which peers get a short while to answer. The adapter aborts the sockets
        still open after the last step, then calls :meth:`stopped`.
        """
        self.accepting = False
        log.info(
            "hardlight server stopping%s: %d connections, %d calls running, grace %gs",
            f" on {self.stop_reason}" if self.stop_reason else "",
            self.open_sessions,
            self.running_calls,
            grace,
        )
        yield ShutdownStep("running calls to finish", lambda: not self.running_calls, grace)
        for session in list(self.sessions):
            session.cancel_calls()
            session.close(1001, "server shutting down")
        yield ShutdownStep(
            "connections to close", lambda: not self.sessions, min(grace, 2.0) + 0.5
        )

    def stopped(self) -> None:
        """The server stopped: the topic notifier ends."""
        if self._notifier is not None:
            self._notifier.close()
        log.info("hardlight server (%s) stopped", self.service_name)

    def _forget(self, session: ServerSession) -> None:
        for change in self.switch.unsubscribe_all(session):
            self._topic_changed(change)


class EventEmitter:
    """Sends events of one type to topics, from application code (many may exist)."""

    def __init__(self, core: ServerCore, event_type: Any) -> None:
        self._core = core
        self._event_type = event_type

    def emit_nowait(self, topic: TopicLike, event: Any) -> int:
        """Queue ``event`` to every connection subscribed to ``topic`` (a Topic, str or
        bytes); returns how many.

        Never blocks: a subscriber that does not read is closed at its outgoing bound.
        """
        topic = as_topic(topic)
        payload = encode(event, self._event_type)
        core = self._core
        if core.lock is None:
            return core.emit(topic, payload)
        with core.lock:
            return core.emit(topic, payload)


class ServerSession:
    """One server-side connection: its protocol machine, handler and state tracker."""

    def __init__(self, core: ServerCore, connection: ServerConnection | MessageConnection) -> None:
        self.core = core
        self.connection = connection
        self.handler: Any = None
        self.tracker: StateTracker[Any] | None = None
        self.running: dict[int, HandlerCall] = {}
        self.closed_event: ConnectionClosed | None = None
        #: what the handshake said (path, headers, origin, level), once it arrived
        self.handshake: HandshakeInfo | None = None
        #: free for the adapter (e.g. its protocol object for this connection)
        self.adapter: Any = None
        #: the peer's address, if the adapter knows it
        self.peer: Any = None
        #: core.now() when the handshake was accepted
        self.connected_at: float | None = None
        self._auth: Any = None
        self._forgotten = False

    # -- input ---------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float | None = None) -> list[HandlerCall]:
        """Feed bytes from the socket (b"" at EOF).

        The calls that arrive are started with ``core.spawn``; without one they are
        returned for the caller to run (:meth:`HandlerCall.run`).
        """
        return self._input(data, now)

    def receive_message(self, payload: bytes) -> list[HandlerCall]:
        """Feed one whole binary message (a connection made by
        :meth:`ServerCore.open_message_session`); calls start as by :meth:`receive_data`."""
        return self._input(payload, None)

    def peer_closed(self, code: int | None = None, reason: str = "") -> None:
        """The peer of a message connection closed (or went away)."""
        connection = self.connection
        if isinstance(connection, MessageConnection):
            connection.peer_closed(code, reason)
            self._drain([])
        self._after_io()

    def messages_to_send(self) -> list[bytes]:
        """Packed messages to send (a message connection), in order."""
        connection = self.connection
        assert isinstance(connection, MessageConnection), "a framed connection: data_to_send()"
        return connection.messages_to_send()

    def _input(self, data: bytes | None, now: float | None) -> list[HandlerCall]:
        calls: list[HandlerCall] = []
        connection = self.connection
        try:
            if data is not None:
                if isinstance(connection, MessageConnection):
                    connection.receive_message(data)
                else:
                    connection.receive_data(data, now)
            self._drain(calls)
        except Exception:
            self._internal_error("reading from the connection")
        spawn = self.core.spawn
        if spawn is not None and calls:
            inline = self.core.inline_calls
            for call in calls:
                if call.call_id not in self.running:
                    continue  # cancelled meanwhile
                if inline and call.never_suspends:
                    # it cannot wait, so it needs no task: its answer leaves with this read
                    contextvars.copy_context().run(call.run_inline)
                else:
                    call.cancel = spawn(call.run())
            calls = []
        self._after_io()
        return calls

    def handle_timer(self, now: float) -> None:
        """Let deadlines (handshake, idle, pings, close) act."""
        try:
            self.connection.handle_timer(now)
            self._drain([])
        except Exception:
            self._internal_error("handling a timer")
        self._after_io()

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next run (None: no deadline)."""
        return self.connection.get_timer()

    def _drain(self, calls: list[HandlerCall]) -> None:
        while True:
            event = self.connection.next_event()
            if event is None:
                return
            if isinstance(event, CallReceived):
                call = self._start_call(event)
                if call is not None:
                    calls.append(call)
            elif isinstance(event, HandshakeRequested):
                self._handshake(event)
            elif isinstance(event, ConnectionClosed):
                self.closed_event = event
                self._end()

    def _handshake(self, event: HandshakeRequested) -> None:
        core = self.core
        info = HandshakeInfo(
            path=event.path,
            headers=event.headers,
            origin=event.origin,
            compression_level=event.compression_level,
        )
        self.handshake = info
        refusal = self._refusal(info)
        if refusal is not None:
            self._refuse(*refusal)
            return
        try:
            handler = core.handler_factory()
            handler._hl_bind(self, self._auth)
        except Exception:
            log.exception("creating the handler failed; refusing the handshake")
            self._refuse(500, "server could not create a handler")
            return
        self.handler = handler
        state = getattr(handler, "state", None)
        if state is not None:
            try:
                self.tracker = StateTracker(type(state))
                self.tracker.changes(state)  # the default state is what the client starts with
            except Exception:
                log.exception("the handler's initial state does not archive; refusing")
                self._refuse(500, "server could not create the connection state")
                return
        core._open_sessions += 1
        self.connection.accept()
        self.connected_at = core.now()
        log.debug(
            "connection from %s accepted (path %s, compression level %d)",
            self.peer,
            info.path,
            info.compression_level,
        )
        if core.hooks:
            core._notify("on_connect", ConnectionInfo(self.peer, info.path))

    def _refuse(self, status: int, reason: str) -> None:
        log.debug("refused a handshake from %s: %d %s", self.peer, status, reason)
        self.connection.refuse(status, reason)
        core = self.core
        if core.hooks:
            path = self.handshake.path if self.handshake is not None else None
            core._notify("on_refuse", ConnectionInfo(self.peer, path, status, reason))

    def _refusal(self, info: HandshakeInfo) -> tuple[int, str] | None:
        core = self.core
        if not core.accepting:
            return 503, "server shutting down"
        if core.open_sessions >= core.max_connections:
            return 503, "server is at its connection limit"
        if (
            core.allowed_origins is not None
            and info.origin is not None
            and info.origin not in core.allowed_origins
        ):
            return 403, f"origin {info.origin} is not allowed"
        if core.authenticate is not None:
            try:
                self._auth = core.authenticate(info)
            except Refuse as refusal:
                return refusal.status, refusal.reason
            except Exception:
                log.exception("authenticate hook raised; refusing the handshake")
                return 500, "authentication failed"
        return None

    def _call_info(self, method: str, call_id: int) -> CallInfo | None:
        core = self.core
        if not core._observing_calls():
            return None
        info = CallInfo(core.service_name, method, call_id, self.peer, core.now())
        if core.hooks:
            core._notify("on_call_start", info)
        return info

    def _call_ended(
        self, info: CallInfo | None, outcome: str, error: BaseException | None = None
    ) -> None:
        """Report the end of a call to the log and the hooks (once per call)."""
        if info is None or info.outcome is not None:
            return
        core = self.core
        info.outcome = outcome
        info.error = error
        now = core.now()
        if now is not None and info.started is not None:
            info.duration = now - info.started
        if log.isEnabledFor(DEBUG):
            log.debug(
                "call %d %s from %s: %s%s",
                info.call_id,
                info.method or "(undecodable)",
                info.peer,
                outcome,
                "" if info.duration is None else f" in {info.duration * 1000:.3f} ms",
            )
        if core.hooks:
            core._notify("on_call_end", info)

    def _start_call(self, event: CallReceived) -> HandlerCall | None:
        spec = self.core.spec
        try:
            method, args = spec.decode_call(event.internal)
        except Exception as exc:  # every decode failure, whatever the bytes
            log.debug("call %d undecodable: %s", event.call_id, exc)
            info = self._call_info("", event.call_id)
            self._answer(event.call_id, Err(RpcHandlerError.ServerDecodeError))
            self._call_ended(info, RpcHandlerError.ServerDecodeError.name, exc)
            return None
        info = self._call_info(method.name, event.call_id)
        bound: Any = None
        try:
            bound = getattr(self.handler, method.name)
            coroutine = bound(*args)
            # the exact type first: isinstance against the Coroutine ABC is slow
            if type(coroutine) is not types.CoroutineType and not isinstance(coroutine, Coroutine):
                raise TypeError(
                    f"the handler's {method.name}() returned {type(coroutine).__name__}, "
                    "not a coroutine (declare it async def)"
                )
        except Exception as exc:
            log.error(
                "handler %s.%s could not be called; answering HandlerPanicked",
                type(self.handler).__name__,
                method.name,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            self._answer(event.call_id, Err(RpcHandlerError.HandlerPanicked))
            self._call_ended(info, RpcHandlerError.HandlerPanicked.name, exc)
            return None
        function = getattr(bound, "__func__", None)
        never_suspends = function is not None and function is self.core._never_suspend.get(
            method.name
        )
        call = HandlerCall(
            self, event.call_id, method.name, coroutine, info=info, never_suspends=never_suspends
        )
        self.running[event.call_id] = call
        return call

    # -- results -------------------------------------------------------------------------------

    def complete(
        self, call: HandlerCall, value: Any = None, error: BaseException | None = None
    ) -> None:
        """Report how ``call`` ended: its return value, or the exception it raised.

        Queues the state change the call caused (if any) and then its response. A
        failed call sends no state change; a state that does not archive is rolled
        back to what the client last got, and the call answers HandlerPanicked.
        """
        self.running.pop(call.call_id, None)
        if self.connection.state is not ConnectionState.OPEN:
            self._call_ended(call.info, "unanswered", error)
            return  # the connection ended meanwhile: nobody to answer
        try:
            if error is not None and not isinstance(error, Exception):
                error = RuntimeError(f"handler ended with {type(error).__name__}")
            spec = self.core.spec
            output = outcome_to_output(spec, spec.method(call.method), value, error, call.call_id)
            if self.tracker is not None and isinstance(output, Ok):
                output = self._sync_state_for(call, output)
            self._answer(call.call_id, output)
        except Exception:
            self._call_ended(call.info, "internal error", error)
            self._internal_error(f"answering call {call.call_id} ({call.method})")
        else:
            if call.info is not None:
                outcome = "ok" if isinstance(output, Ok) else output.error.name
                self._call_ended(call.info, outcome, error)
        self._after_io()

    def _sync_state_for(
        self, call: HandlerCall, output: Ok[bytes]
    ) -> Ok[bytes] | Err[RpcHandlerError]:
        tracker = self.tracker
        assert tracker is not None
        state = self.handler.state
        try:
            updates = tracker.changes(state)
        except Exception as exc:
            log.error(
                "handler %s.%s left a connection state that does not archive (%s); "
                "rolled it back and answered HandlerPanicked",
                type(self.handler).__name__,
                call.method,
                exc,
            )
            tracker.rollback(state)
            return Err(RpcHandlerError.HandlerPanicked)
        if updates:
            self.connection.send_state_change(updates)
        return output

    def sync_state(self) -> None:
        """Queue one StateChange with every state field that changed since the last sync."""
        if self.tracker is None or self.connection.state is not ConnectionState.OPEN:
            return
        updates: list[StateUpdate] = self.tracker.changes(self.handler.state)
        if updates:
            self.connection.send_state_change(updates)
            self._after_io()

    def _answer(self, call_id: int, output: Ok[bytes] | Err[RpcHandlerError]) -> None:
        if self.connection.state is ConnectionState.OPEN:
            self.connection.send_response(call_id, output)

    def queue_frame(self, frame: bytes) -> bool:
        """Queue a whole event frame (fan-out); False if the connection is not open."""
        connection = self.connection
        if connection.state is not ConnectionState.OPEN or connection.framed is False:
            return False
        assert isinstance(connection, ServerConnection)
        queued = connection.send_frame(frame)
        self._after_io()
        return queued

    def queue_packed(self, packed: bytes) -> bool:
        """Queue an event packed once for many (fan-out to a message connection)."""
        connection = self.connection
        if connection.state is not ConnectionState.OPEN or not isinstance(
            connection, MessageConnection
        ):
            return False
        queued = connection.send_packed(packed)
        self._after_io()
        return queued

    # -- output and end --------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the socket; empties the buffer."""
        connection = self.connection
        assert isinstance(connection, ServerConnection), "a message connection: messages_to_send()"
        return connection.data_to_send()

    def close(self, code: int = 1000, reason: str = "", now: float | None = None) -> None:
        """Start the close handshake (graceful shutdown uses 1001)."""
        if not self.connection.state.ended and self.connection.state is not ConnectionState.CLOSING:
            self.connection.close(code, reason, now)
            self._drain([])
        self._after_io()

    def send_failed(self) -> None:
        """The adapter could not write what it was given: the connection is lost."""
        connection = self.connection
        if isinstance(connection, ServerConnection):
            connection.send_failed()
        else:
            connection.peer_closed(None, "write failed")
        self._drain([])
        self._after_io()

    def cancel_calls(self) -> None:
        """Cancel every running handler call (their answers are not sent)."""
        running, self.running = self.running, {}
        for call in running.values():
            if call.cancel is not None:
                call.cancel()
            else:
                call.coroutine.close()
            self._call_ended(call.info, "cancelled")

    def connection_lost(self) -> None:
        """The socket is gone (reset, EOF or a failed write): clean everything up."""
        connection = self.connection
        if not connection.state.ended:
            with contextlib.suppress(Exception):
                if isinstance(connection, MessageConnection):
                    connection.peer_closed(None, "connection lost")
                else:
                    connection.receive_data(b"")
                self._drain([])
        self.cancel_calls()
        self._end()
        self.core.sessions.discard(self)

    @property
    def finished(self) -> bool:
        """True once nothing more will be read or written: close the socket."""
        connection = self.connection
        return connection.state.ended and not connection.outgoing_size

    def _internal_error(self, doing: str) -> None:
        """A bug of the server itself: log it, close this connection only, with 1011."""
        log.exception("internal error while %s; closing the connection with 1011", doing)
        with contextlib.suppress(Exception):
            self.connection.fail(ProtocolError(f"internal error while {doing}", 1011))
            self._drain([])
        self._end()

    def _end(self) -> None:
        if not self._forgotten:
            self._forgotten = True
            core = self.core
            if self.handler is not None:
                core._open_sessions -= 1
                self._report_close()
            core._forget(self)

    def _report_close(self) -> None:
        core = self.core
        closed = self.closed_event
        code = closed.code if closed is not None else None
        reason = closed.reason if closed is not None else ""
        if closed is not None and closed.error is not None and not reason:
            reason = str(closed.error)
        log.debug("connection from %s closed: %s %s", self.peer, code, reason)
        if core.hooks:
            now = core.now()
            start = self.connected_at
            duration = now - start if now is not None and start is not None else None
            path = self.handshake.path if self.handshake is not None else None
            core._notify("on_disconnect", ConnectionInfo(self.peer, path, code, reason, duration))

    def _after_io(self) -> None:
        connection = self.connection
        if connection.outgoing_size:
            self.core.on_output(self)
        if connection.state.ended:
            self._end()


def _ignore(_: Any) -> None:
    pass


def _ignore_emit(topic: Topic, payload: bytes) -> None:
    pass


# the opcodes through which a coroutine's own frame can suspend
_SUSPENDING_OPS = frozenset(
    {
        "GET_AWAITABLE",
        "SEND",
        "YIELD_VALUE",
        "YIELD_FROM",
        "GET_AITER",
        "GET_ANEXT",
        "BEFORE_ASYNC_WITH",
        "END_ASYNC_FOR",
        "ASYNC_GEN_WRAP",
    }
)


def cannot_suspend(function: Any) -> bool:
    """True when ``function`` is a plain ``async def`` whose body has no await, async for
    or async with: calling it gives a coroutine that runs to its end in one step, whatever
    it calls. Wrappers (a sync function returning a coroutine, ``functools.wraps``
    decorators) and anything else answer False."""
    if type(function) is not types.FunctionType:
        return False
    code = function.__code__
    if not code.co_flags & inspect.CO_COROUTINE:
        return False
    return not any(i.opname in _SUSPENDING_OPS for i in dis.get_instructions(code))
