"""The server engine: connections, handlers, state sync and topic fan-out, without I/O.

An adapter owns sockets and a way to run coroutines; everything else is decided
here, so every adapter behaves the same:

* :meth:`ServerCore.open_session` for each accepted socket; feed its bytes to
  :meth:`ServerSession.receive_data`, which returns the :class:`HandlerCall` s to
  run; run each ``call.coroutine`` and report with :meth:`ServerSession.complete`.
* Write :meth:`ServerSession.data_to_send` to the socket whenever
  ``ServerCore.on_output`` names the session (coalesce: once per loop turn).
* Close the socket when :attr:`ServerSession.finished` is true.
* ``ServerCore.on_topic`` receives ``TopicCreated`` / ``TopicRemoved`` for the
  server's topic notifier.

Ordering guarantees the reference lacks: a call's state change is queued before
its response; a subscription made by a handler is in effect for the very next
emit; a closing connection is unsubscribed from everything.
"""

from __future__ import annotations

import contextlib
import dis
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ._config import HandshakeInfo, Refuse, ServerConfig
from ._conn_state import StateTracker
from ._connection import ServerConnection, server_frame
from ._envelope import NewEvent, StateUpdate, Topic, pack
from ._errors import LocalProtocolError, RpcHandlerError
from ._events import CallReceived, ConnectionClosed, HandshakeRequested
from ._limits import Limits
from ._service import ServiceSpec, outcome_to_output
from ._state import ConnectionState
from ._topics import EventSwitch, TopicCreated, TopicRemoved
from ._types import Err

__all__ = ["HandlerCall", "ServerCore", "ServerSession"]

log = logging.getLogger("hardlight")

TopicChange = TopicCreated | TopicRemoved


@dataclass(slots=True)
class HandlerCall:
    """One call for the adapter to run: await ``coroutine``, then report to ``session``.

    ``never_awaits`` is True when the handler's body has no ``await`` at all: it cannot
    suspend, so an adapter may run it to its end at once instead of scheduling a task.
    """

    session: ServerSession
    call_id: int
    method: str
    coroutine: Coroutine[Any, Any, Any]
    never_awaits: bool = False


_SUSPENDING_OPS = frozenset(
    {
        "GET_AWAITABLE",
        "SEND",
        "YIELD_VALUE",
        "GET_AITER",
        "GET_ANEXT",
        "BEFORE_ASYNC_WITH",
        "END_ASYNC_FOR",
        "ASYNC_GEN_WRAP",
        "YIELD_FROM",
    }
)


def never_awaits(function: Any) -> bool:
    """True when a coroutine function's own code contains no await (it cannot suspend)."""
    code = getattr(getattr(function, "__func__", function), "__code__", None)
    if code is None:
        return False
    return not any(i.opname in _SUSPENDING_OPS for i in dis.get_instructions(code))


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
    ) -> None:
        self.spec = ServiceSpec.of(handler_class)
        self.handler_class = handler_class
        #: methods whose handler body never awaits (adapters may run them at once)
        self.never_awaits = {
            m.name: never_awaits(getattr(handler_class, m.name, None)) for m in self.spec.methods
        }
        self.handler_factory = handler_factory or handler_class
        self.limits = limits or Limits()
        self.max_connections = max_connections
        self.allowed_origins = allowed_origins
        self.authenticate = authenticate
        self.switch: EventSwitch[ServerSession] = EventSwitch()
        self.sessions: set[ServerSession] = set()
        #: called with a session whose outgoing buffer became non-empty
        self.on_output: Callable[[ServerSession], None] = lambda session: None
        #: called with every TopicCreated / TopicRemoved
        self.on_topic: Callable[[TopicChange], None] = lambda change: None
        #: called with every event emitted on this node (an event bus publishes it)
        self.on_emit: Callable[[Topic, bytes], None] = lambda topic, payload: None
        self.events_emitted = 0
        self._open_sessions = 0

    @classmethod
    def from_config(
        cls, config: ServerConfig, handler_class: type[Any], handler_factory: Any = None
    ) -> ServerCore:
        """The engine for a server configured by ``config`` (what every adapter builds)."""
        return cls(
            handler_class,
            limits=config.limits,
            max_connections=config.max_connections,
            allowed_origins=config.allowed_origins,
            authenticate=config.authenticate,
            handler_factory=handler_factory,
        )

    def open_session(self) -> ServerSession:
        """A new connection (its handshake not yet read)."""
        session = ServerSession(self)
        self.sessions.add(session)
        return session

    @property
    def open_sessions(self) -> int:
        """How many connections passed the handshake and have not ended."""
        return self._open_sessions

    def emit(self, topic: Topic, payload: bytes) -> int:
        """Send an event (an rkyv archive) to every connection subscribed to ``topic``.

        The message is packed once per compression level in use, not once per
        connection. Returns how many local connections it was queued for; the
        ``on_emit`` hook then hands it to an event bus for the other nodes.
        """
        count = self.deliver(topic, payload)
        self.on_emit(topic, payload)
        return count

    def deliver(self, topic: Topic, payload: bytes) -> int:
        """Deliver an event to this node's subscribers only (events from a bus)."""
        subscribers = self.switch.subscribers(topic)
        if not subscribers:
            return 0
        frames: dict[int, bytes] = {}
        event = NewEvent(topic, payload)
        count = 0
        for session in list(subscribers):
            level = session.connection.compression_level
            frame = frames.get(level)
            if frame is None:
                frame = frames[level] = server_frame(pack(event, level))
            if session.queue_frame(frame):
                count += 1
        self.events_emitted += count
        return count

    def subscribe(self, session: ServerSession, topic: Topic) -> None:
        """Subscribe a connection to a topic (reports ``TopicCreated`` if it is new)."""
        change = self.switch.subscribe(session, topic)
        if change is not None:
            self.on_topic(change)

    def unsubscribe(self, session: ServerSession, topic: Topic) -> None:
        """Unsubscribe a connection (reports ``TopicRemoved`` if it was the last)."""
        change = self.switch.unsubscribe(session, topic)
        if change is not None:
            self.on_topic(change)

    def _forget(self, session: ServerSession) -> None:
        for change in self.switch.unsubscribe_all(session):
            self.on_topic(change)
        self.sessions.discard(session)


class ServerSession:
    """One server-side connection: its protocol machine, handler and state tracker."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.connection = ServerConnection(limits=core.limits)
        self.handler: Any = None
        self.tracker: StateTracker[Any] | None = None
        self.running: dict[int, HandlerCall] = {}
        self.closed_event: ConnectionClosed | None = None
        #: free for the adapter (e.g. its protocol object for this connection)
        self.adapter: Any = None
        self._forgotten = False

    # -- input ---------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float | None = None) -> list[HandlerCall]:
        """Feed bytes from the socket (b"" at EOF); returns the calls to run now."""
        calls: list[HandlerCall] = []
        self.connection.receive_data(data, now)
        self._drain(calls)
        self._after_io()
        return calls

    def handle_timer(self, now: float) -> None:
        """Let deadlines (handshake, idle, pings, close) act."""
        self.connection.handle_timer(now)
        self._drain([])
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
        if core.open_sessions >= core.max_connections:
            self.connection.refuse(503, "server is at its connection limit")
            return
        if (
            core.allowed_origins is not None
            and event.origin is not None
            and event.origin not in core.allowed_origins
        ):
            self.connection.refuse(403, f"origin {event.origin} is not allowed")
            return
        auth: Any = None
        if core.authenticate is not None:
            try:
                auth = core.authenticate(info)
            except Refuse as refusal:
                self.connection.refuse(refusal.status, refusal.reason)
                return
            except Exception:
                log.exception("authenticate hook raised; refusing the handshake")
                self.connection.refuse(500, "authentication failed")
                return
        try:
            handler = core.handler_factory()
        except Exception:
            log.exception("handler factory raised; refusing the handshake")
            self.connection.refuse(500, "server could not create a handler")
            return
        handler._hl_bind(self, auth)
        self.handler = handler
        core._open_sessions += 1
        state = getattr(handler, "state", None)
        if state is not None:
            self.tracker = StateTracker(type(state))
            self.tracker.changes(state)  # the default state is what the client starts with
        self.connection.accept()

    def _start_call(self, event: CallReceived) -> HandlerCall | None:
        try:
            method, args = self.core.spec.decode_call(event.internal)
        except Exception as exc:  # every decode failure, whatever the bytes
            log.debug("call %d undecodable: %s", event.call_id, exc)
            self.connection.send_response(event.call_id, Err(RpcHandlerError.ServerDecodeError))
            return None
        coroutine = getattr(self.handler, method.name)(*args)
        call = HandlerCall(
            self, event.call_id, method.name, coroutine, self.core.never_awaits[method.name]
        )
        self.running[event.call_id] = call
        return call

    # -- results from the adapter --------------------------------------------------------------

    def complete(
        self, call: HandlerCall, value: Any = None, error: BaseException | None = None
    ) -> None:
        """Report how ``call`` ended: its return value, or the exception it raised.

        Queues the state change the call caused (if any) and then its response.
        """
        self.running.pop(call.call_id, None)
        connection = self.connection
        if connection.state is not ConnectionState.OPEN:
            return  # the connection ended meanwhile: nobody to answer
        if error is not None and not isinstance(error, Exception):
            error = RuntimeError(f"handler ended with {type(error).__name__}")
        spec = self.core.spec
        output = outcome_to_output(spec, spec.method(call.method), value, error)
        if self.tracker is not None:
            self.sync_state()
        try:  # noqa: SIM105 - a context manager per call costs more than this whole method
            connection.send_response(call.call_id, output)
        except LocalProtocolError:
            pass  # closed while queueing (outgoing queue full): the close says why
        self._after_io()

    def sync_state(self) -> None:
        """Queue one StateChange with every state field that changed since the last sync."""
        if self.tracker is None or self.connection.state is not ConnectionState.OPEN:
            return
        updates: list[StateUpdate] = self.tracker.changes(self.handler.state)
        if updates:
            self.connection.send_state_change(updates)
            self._after_io()

    def queue_frame(self, frame: bytes) -> bool:
        """Queue a whole event frame (fan-out); False if the connection is not open."""
        connection = self.connection
        if connection.state is not ConnectionState.OPEN:
            return False
        try:
            connection.send_frame(frame)
            queued = True
        except LocalProtocolError:
            queued = False  # closed: the outgoing queue was full
        self._after_io()
        return queued

    # -- output ----------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the socket; empties the buffer."""
        return self.connection.data_to_send()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (graceful shutdown uses 1001)."""
        if self.connection.state in (ConnectionState.OPEN, ConnectionState.CONNECTING):
            with contextlib.suppress(LocalProtocolError):
                self.connection.close(code, reason)
        self._after_io()

    def connection_lost(self) -> None:
        """The socket is gone (reset, EOF or written-to failure): clean everything up."""
        if self.connection.state not in (ConnectionState.CLOSED, ConnectionState.ERROR):
            try:
                self.connection.receive_data(b"")
            except Exception:
                log.debug("EOF after the connection broke", exc_info=True)
            self._drain([])
        self._end()

    @property
    def finished(self) -> bool:
        """True once nothing more will be read or written: close the socket."""
        return self.connection.state in (ConnectionState.CLOSED, ConnectionState.ERROR) and not (
            self.connection.outgoing_size
        )

    def _end(self) -> None:
        if not self._forgotten:
            self._forgotten = True
            if self.handler is not None:
                self.core._open_sessions -= 1
            self.core._forget(self)

    def _after_io(self) -> None:
        if self.connection.outgoing_size:
            self.core.on_output(self)
        if self.connection.state in (ConnectionState.CLOSED, ConnectionState.ERROR):
            self._end()
