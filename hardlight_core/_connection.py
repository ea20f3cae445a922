"""The connection machines: a WebSocket transport with a HardLight session on top.

:class:`ServerConnection` and :class:`ClientConnection` join :mod:`._transport`
(upgrade, frames, ping/close, timers, bounds) and :mod:`._session` (messages, call
ids), the way wsproto hands its handshake's connection to the frame layer. Bytes
in (``receive_data``), events out (``next_event``), bytes to write out
(``data_to_send``); time only as arguments.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator

from ._envelope import StateUpdate, Topic
from ._errors import (
    ClientNotConnected,
    HardLightError,
    LocalProtocolError,
    MessageTooLarge,
    PeerNotReading,
    ProtocolError,
    RpcHandlerError,
)
from ._events import CallFailed, ConnectionClosed, Event, HandshakeRequested
from ._framing import Opcode, frame_bytes
from ._limits import Limits
from ._session import ClientMessageSession, ServerMessageSession
from ._state import ConnectionState, Trigger, transition
from ._transport import ClientTransport, MessageReceived, ServerTransport, _Transport
from ._types import Err, Ok

__all__ = ["ClientConnection", "MessageConnection", "ServerConnection", "server_frame"]


class _Connection:
    """A transport and the session on top of it; events of both in one queue, in order."""

    framed = True  # sends WebSocket frames (not whole messages for someone else to frame)

    transport: _Transport
    session: ServerMessageSession | ClientMessageSession

    def __init__(self) -> None:
        self._events: deque[Event] = deque()

    # -- the transport's face -----------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The transport's state."""
        return self.transport.state

    @property
    def limits(self) -> Limits:
        """The bounds in force."""
        return self.transport.limits

    @property
    def compression_level(self) -> int:
        """The level the server packs its messages at (negotiated in the handshake)."""
        return self.transport.compression_level

    @property
    def outgoing_size(self) -> int:
        """Bytes queued and not yet taken by :meth:`data_to_send`."""
        return self.transport.outgoing_size

    @property
    def ignored_messages(self) -> int:
        """Messages dropped as the reference drops them (text, undecodable, duplicate id)."""
        return self.transport.ignored_messages + self.session.ignored_messages

    def receive_data(self, data: bytes, now: float | None = None) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed (EOF)."""
        self.transport.receive_data(data, now)
        self._take_transport_events()

    def next_event(self) -> Event | None:
        """The next event, or None when more data is needed."""
        return self._events.popleft() if self._events else None

    def events(self) -> Iterator[Event]:
        """Every event available now."""
        while self._events:
            yield self._events.popleft()

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket (empties the buffer)."""
        return self.transport.data_to_send()

    def send_failed(self) -> None:
        """The adapter could not write what it was given: the connection is lost."""
        self.transport.send_failed()
        self._take_transport_events()

    def fail(self, error: ProtocolError) -> None:
        """Close because of ``error``, found above the transport (its close code is sent)."""
        self.transport.fail(error)
        self._take_transport_events()

    def close(self, code: int = 1000, reason: str = "", now: float | None = None) -> None:
        """Start the close handshake (or end a connection still in its handshake)."""
        self.transport.close(code, reason, now)
        self._take_transport_events()

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should run next."""
        return self.transport.get_timer()

    def handle_timer(self, now: float) -> None:
        """Act on deadlines that passed (handshake, keep-alive, idle, close)."""
        self.transport.handle_timer(now)
        self._take_transport_events()

    # -- joining the layers ---------------------------------------------------------------

    def _take_transport_events(self) -> None:
        """Move transport events up: messages through the session, in order."""
        transport, session, events = self.transport, self.session, self._events
        too_large = False
        while True:
            event = transport.next_event()
            if event is None:
                break
            if isinstance(event, MessageReceived):
                if too_large:
                    continue  # read after a message that closed the connection with 1009
                try:
                    read = session.read_message(event.payload)
                except MessageTooLarge as exc:
                    too_large = True
                    transport.fail(exc)
                    continue
                if read is not None:
                    events.append(read)
            elif isinstance(event, ConnectionClosed):
                session.end()
                self._take_session_events()
                events.append(event)
            else:
                events.append(event)

    def _take_session_events(self) -> None:
        session, events = self.session, self._events
        while True:
            event = session.next_event()
            if event is None:
                return
            events.append(event)

    def _send(self, payload: bytes) -> None:
        """Frame one packed message now (a peer that does not read ends the connection)."""
        if not self.transport.send_message(payload):
            self._take_transport_events()

    def _check_open(self) -> None:
        if self.transport.state is not ConnectionState.OPEN:
            raise LocalProtocolError(f"cannot send: the connection is {self.state.value}")


class ServerConnection(_Connection):
    """The server side of one HardLight connection.

    After :class:`HandshakeRequested`, call :meth:`accept` or :meth:`refuse`. Then
    :class:`CallReceived` events arrive; answer each with :meth:`send_response`.
    """

    def __init__(self, limits: Limits | None = None, now: float | None = None) -> None:
        super().__init__()
        self.transport: ServerTransport = ServerTransport(limits, now)
        self.session: ServerMessageSession = ServerMessageSession(self.transport.limits)

    def accept(self) -> None:
        """Answer 101 ``hl/2``; calls flow from now on."""
        self.session.compression_level = self.transport.compression_level
        self.transport.accept()
        self._take_transport_events()

    def refuse(self, status: int = 400, reason: str = "refused") -> None:
        """Answer the upgrade with ``status`` and ``reason``, then close: no call is served."""
        self.transport.refuse(status, reason)
        self._take_transport_events()

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket; answered call ids become free."""
        session = self.session
        if session._answered:
            session.release_answered()
        return self.transport.data_to_send()

    def send_response(self, call_id: int, output: Ok[bytes] | Err[RpcHandlerError]) -> None:
        """Answer call ``call_id`` (its id is free once the answer is taken to be written)."""
        self._check_open()
        self._send(self.session.pack_response(call_id, output))

    def send_event(self, topic: Topic, payload: bytes) -> None:
        """Send an event (``payload`` is an rkyv archive) on ``topic``."""
        self._check_open()
        self._send(self.session.pack_event(topic, payload))

    def send_state_change(self, updates: list[StateUpdate]) -> None:
        """Send the changed state fields in one message."""
        self._check_open()
        self._send(self.session.pack_state_change(updates))

    def send_frame(self, frame: bytes) -> bool:
        """Send a whole frame from :func:`server_frame` (fan-out frames once per level).

        False when the peer does not read (the connection is then closed with 1008).
        """
        self._check_open()
        queued = self.transport.send_frame(frame)
        if not queued:
            self._take_transport_events()
        return queued

    @property
    def calls_in_flight(self) -> int:
        """Calls received whose answer has not been taken to be written."""
        return self.session.calls_in_flight


def server_frame(payload: bytes) -> bytes:
    """The binary frame a server sends for a packed message (the same on every connection)."""
    return frame_bytes(Opcode.BINARY, payload, mask=False)


class ClientConnection(_Connection):
    """The client side of one HardLight connection; the upgrade request is queued at once."""

    def __init__(
        self,
        host: str,
        *,
        path: str = "/",
        compression_level: int = 6,
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
        limits: Limits | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        now: float | None = None,
    ) -> None:
        super().__init__()
        self.transport: ClientTransport = ClientTransport(
            host,
            path=path,
            compression_level=compression_level,
            extra_headers=extra_headers,
            limits=limits,
            random_bytes=random_bytes,
            now=now,
        )
        self.session: ClientMessageSession = ClientMessageSession(
            self.transport.limits, compression_level
        )

    @property
    def client_level(self) -> int:
        """The level this client packs its calls at."""
        return self.transport.client_level

    def start_call(self, internal: bytes) -> int:
        """Queue a call (``internal`` = archived RpcCall); returns its id.

        Raises ClientNotConnected when not open and TooManyCallsInFlight when all
        256 ids are taken; nothing is queued then.
        """
        if self.transport.state is not ConnectionState.OPEN:
            raise ClientNotConnected(f"the connection is {self.state.value}")
        call_id, packed = self.session.pack_call(internal)
        self._send(packed)
        if self.transport.state is not ConnectionState.OPEN:
            # the call did not fit the outgoing bound: the connection closed with 1008
            self._events = deque(
                e
                for e in self._events
                if not (isinstance(e, CallFailed) and e.call_id == call_id)
            )
            raise ClientNotConnected("the connection closed while queueing the call")
        return call_id

    def abandon_call(self, call_id: int) -> None:
        """The caller gave up on ``call_id``; its late answer will be dropped."""
        self.session.abandon_call(call_id)

    @property
    def calls_in_flight(self) -> int:
        """Calls sent and not yet answered (abandoned ones included)."""
        return self.session.calls_in_flight


class MessageConnection:
    """A server connection whose handshake and framing something else did (an ASGI
    server, a browser bridge): whole messages in (:meth:`receive_message`), whole packed
    messages out (:meth:`messages_to_send`), with the same rules as
    :class:`ServerConnection` (call ids, the outgoing bound, what is ignored).

    It starts with the :class:`HandshakeRequested` it is given as its first event; the
    server answers it with :meth:`accept` or :meth:`refuse` (then :attr:`refusal` is
    the status and reason for the adapter to answer with). Once ended, the adapter
    closes its WebSocket with :attr:`close_code` / :attr:`close_reason`.
    """

    framed = False

    def __init__(self, handshake: HandshakeRequested, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.state = ConnectionState.CONNECTING
        self.compression_level = handshake.compression_level
        self.session = ServerMessageSession(self.limits, handshake.compression_level)
        self.outgoing_size = 0
        self.refusal: tuple[int, str] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._events: deque[Event] = deque([handshake])
        self._out: list[bytes] = []

    @property
    def ignored_messages(self) -> int:
        """Messages dropped as the reference drops them (undecodable, duplicate id)."""
        return self.session.ignored_messages

    @property
    def calls_in_flight(self) -> int:
        """Calls received whose answer has not been taken to be sent."""
        return self.session.calls_in_flight

    def next_event(self) -> Event | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def accept(self) -> None:
        """The handshake is accepted: messages flow."""
        if self.state is not ConnectionState.CONNECTING:
            raise LocalProtocolError("accept() needs a pending HandshakeRequested")
        self.state = transition(self.state, Trigger.ACCEPTED)

    def refuse(self, status: int = 400, reason: str = "refused") -> None:
        """The handshake is refused with ``status`` and ``reason`` (see :attr:`refusal`)."""
        if self.state is not ConnectionState.CONNECTING:
            raise LocalProtocolError("refuse() is only possible during the handshake")
        self.refusal = (status, reason)
        self._end(Trigger.REFUSED, None, f"handshake refused ({status}): {reason}", None)

    def receive_message(self, payload: bytes) -> None:
        """Feed one binary message."""
        if self.state is not ConnectionState.OPEN:
            return
        if len(payload) > self.limits.max_message_size:
            limit = self.limits.max_message_size
            self.fail(MessageTooLarge(f"message of {len(payload)} bytes over {limit}", limit))
            return
        try:
            self.session.receive_message(payload)
        except MessageTooLarge as exc:
            self.fail(exc)
            return
        while (event := self.session.next_event()) is not None:
            self._events.append(event)

    def peer_closed(self, code: int | None = None, reason: str = "") -> None:
        """The peer closed (or the socket is gone)."""
        if not self.state.ended:
            trigger = Trigger.CLOSE_RECEIVED if self.state is ConnectionState.OPEN else (
                Trigger.CONNECTION_LOST
            )
            self._end(trigger, code if code is not None else 1005, reason, None)

    def send_response(self, call_id: int, output: Ok[bytes] | Err[RpcHandlerError]) -> None:
        """Answer call ``call_id``."""
        self._check_open()
        self.session.send_response(call_id, output)
        self._take()

    def send_event(self, topic: Topic, payload: bytes) -> None:
        """Send an event (``payload`` is an rkyv archive) on ``topic``."""
        self._check_open()
        self.session.send_event(topic, payload)
        self._take()

    def send_state_change(self, updates: list[StateUpdate]) -> None:
        """Send the changed state fields in one message."""
        self._check_open()
        self.session.send_state_change(updates)
        self._take()

    def send_packed(self, packed: bytes) -> bool:
        """Queue a message packed once for many connections (fan-out); False when the peer
        does not read (the connection is then closed with 1008)."""
        self._check_open()
        return self._queue(packed)

    def messages_to_send(self) -> list[bytes]:
        """Packed messages to send, in order; answered call ids become free."""
        self.session.release_answered()
        out, self._out = self._out, []
        self.outgoing_size = 0
        return out

    def close(self, code: int = 1000, reason: str = "", now: float | None = None) -> None:
        """Close with ``code`` (the adapter sends it)."""
        if self.state is ConnectionState.OPEN:
            # the adapter's close frame is the whole handshake as far as this side goes
            self.state = transition(self.state, Trigger.CLOSE_SENT)
            self._end(Trigger.CLOSE_COMPLETED, code, reason, None)
        elif self.state is ConnectionState.CONNECTING:
            self._end(Trigger.CLOSE_SENT, code, reason, None)

    def fail(self, error: ProtocolError) -> None:
        """Close because of ``error`` (its close code is sent)."""
        if not self.state.ended:
            self._end(Trigger.PROTOCOL_ERROR, error.close_code, str(error), error)

    def get_timer(self) -> float | None:
        """No timers: the server in front keeps the connection alive."""
        return None

    def handle_timer(self, now: float) -> None:
        """Nothing to do (see :meth:`get_timer`)."""

    def _take(self) -> None:
        for payload in self.session.take_messages():
            if not self._queue(payload):
                return

    def _queue(self, payload: bytes) -> bool:
        if self.outgoing_size + len(payload) > self.limits.max_outgoing_bytes:
            limit = self.limits.max_outgoing_bytes
            self._end(
                Trigger.PEER_NOT_READING,
                1008,
                f"outgoing queue over {limit} bytes: the peer does not read",
                PeerNotReading(f"the peer did not read: over {limit} bytes queued for it"),
            )
            return False
        self._out.append(payload)
        self.outgoing_size += len(payload)
        return True

    def _check_open(self) -> None:
        if self.state is not ConnectionState.OPEN:
            raise LocalProtocolError(f"cannot send: the connection is {self.state.value}")

    def _end(
        self, trigger: Trigger, code: int | None, reason: str, error: HardLightError | None
    ) -> None:
        self.state = transition(self.state, trigger)
        if self.state.ended:
            self.close_code, self.close_reason = code, reason
            self.session.end()
            self._events.append(ConnectionClosed(code, reason, error))
