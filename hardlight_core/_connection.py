"""The connection machines: :class:`ServerConnection` and :class:`ClientConnection`.

Bytes in (``receive_data``), events out (``next_event``), bytes to write out
(``data_to_send``); time only as arguments (``now``, ``get_timer``/``handle_timer``).
The HTTP upgrade runs on h11, WebSocket framing on wsproto's frame protocol; the
HardLight rules (limits, ids, what is ignored and what closes) are decided here.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator

import h11

from ._calls import ClientCallTable, ServerInFlightTable
from ._envelope import (
    NewEvent,
    RPCRequest,
    RPCResponse,
    StateChange,
    StateUpdate,
    Topic,
    pack,
    unpack_client_message,
    unpack_server_message,
)
from ._errors import (
    ClientNotConnected,
    DecodeError,
    LocalProtocolError,
    MessageTooLarge,
    ProtocolError,
    RemoteProtocolError,
    RpcHandlerError,
)
from ._events import (
    CallFailed,
    CallReceived,
    Connected,
    ConnectionClosed,
    Event,
    EventReceived,
    HandshakeRefused,
    HandshakeRequested,
    MessageIgnored,
    ResponseReceived,
    StateChanged,
)
from ._framing import FrameReader, MaskKeySource, Opcode, close_payload, frame_bytes
from ._handshake import (
    SUBPROTOCOL,
    accept_token,
    build_client_request,
    check_upgrade_request,
    header_value,
    new_key,
    parse_compression_level,
    refusal_response,
    switching_response,
)
from ._limits import Limits
from ._state import ConnectionState, Trigger, transition
from ._types import Err, Ok

__all__ = ["ClientConnection", "ServerConnection"]

log = logging.getLogger("hardlight")

_ABNORMAL = 1006


class _Connection:
    """What both roles share: state, framing, limits, timers and the outgoing buffer."""

    is_client = False

    def __init__(self, limits: Limits | None, now: float | None) -> None:
        self.limits = limits or Limits()
        self.state = ConnectionState.CONNECTING
        self.compression_level = 6
        #: messages dropped as the reference drops them (text, undecodable, duplicate id)
        self.ignored_messages = 0
        self._events: deque[Event] = deque()
        self._out: list[bytes | bytearray] = []
        self.outgoing_size = 0
        self._reader: FrameReader | None = None
        self._started = now
        self._last_received = now
        self._ping_sent_at: float | None = None
        self._close_sent_at: float | None = None
        self._closed_reported = False
        self._random: Callable[[int], bytes] = os.urandom

    # -- driving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float | None = None) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed (EOF)."""
        if now is not None:
            if self._started is None:
                self._started = now
            self._last_received = now
            self._ping_sent_at = None
        if self.state in (ConnectionState.CLOSED, ConnectionState.ERROR):
            return  # after the end everything is dropped (the socket is being closed)
        if not data:
            self._lost("connection lost (EOF without a close frame)")
            return
        if self.state is ConnectionState.CONNECTING:
            self._receive_handshake(data)
        else:
            self._receive_frames(data)

    def next_event(self) -> Event | None:
        """The next event, or None when more data is needed."""
        return self._events.popleft() if self._events else None

    def events(self) -> Iterator[Event]:
        """Every event available now."""
        while self._events:
            yield self._events.popleft()

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket (empties the buffer)."""
        if not self._out:
            return b""
        data = b"".join(self._out) if len(self._out) > 1 else bytes(self._out[0])
        self._out.clear()
        self.outgoing_size = 0
        return data

    def send_failed(self) -> None:
        """The adapter could not write what it was given: the connection is lost."""
        self._out.clear()
        self.outgoing_size = 0
        self._lost("connection lost (write failed)")

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (or end a connection still in its handshake)."""
        if self.state is ConnectionState.CONNECTING:
            self._move(Trigger.CLOSE_SENT)
            self._report_closed(code, reason or "closed during the handshake", None)
            return
        if self.state is not ConnectionState.OPEN:
            raise LocalProtocolError(f"cannot close a connection that is {self.state.value}")
        self._send_close(code, reason)
        self._move(Trigger.CLOSE_SENT)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should run next (None: nothing pending or no clock yet)."""
        limits = self.limits
        if self._started is None:
            return None
        if self.state is ConnectionState.CONNECTING:
            return self._started + limits.handshake_timeout
        if self.state is ConnectionState.CLOSING and self._close_sent_at is not None:
            return self._close_sent_at + limits.close_timeout
        if self.state is ConnectionState.OPEN and self._last_received is not None:
            if self._ping_sent_at is not None:
                return self._ping_sent_at + limits.idle_timeout
            return self._last_received + limits.idle_timeout
        return None

    def handle_timer(self, now: float) -> None:
        """Act on deadlines that passed: handshake timeout, keep-alive ping, idle, close."""
        if self._started is None:
            self._started = self._last_received = now
            return
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        if self.state is ConnectionState.CONNECTING:
            self._fail(RemoteProtocolError("handshake not completed in time", 1002), send=False)
        elif self.state is ConnectionState.CLOSING:
            self._move(Trigger.CLOSE_COMPLETED)
            self._report_closed(None, "peer did not answer the close frame in time", None)
        elif self.state is ConnectionState.OPEN:
            if self._ping_sent_at is None:
                self._ping_sent_at = now
                self._queue(self._frame(Opcode.PING, b"hl"))
            else:
                self._fail(RemoteProtocolError("peer idle: no answer to a ping", 1001))

    # -- internals shared by both roles ------------------------------------------------------

    def _move(self, trigger: Trigger) -> None:
        self.state = transition(self.state, trigger)

    def _frame(self, opcode: Opcode, payload: bytes) -> bytes:
        return frame_bytes(opcode, payload, mask=self.is_client, random_bytes=self._random)

    def _queue(self, data: bytes | bytearray) -> None:
        self._out.append(data)
        self.outgoing_size += len(data)

    def _queue_message(self, payload: bytes, *, essential: bool) -> None:
        self._queue_frame(self._frame(Opcode.BINARY, payload), essential=essential)

    def _queue_frame(self, frame: bytes, *, essential: bool) -> None:
        if self.state is not ConnectionState.OPEN:
            raise LocalProtocolError(f"cannot send: the connection is {self.state.value}")
        if self.outgoing_size + len(frame) > self.limits.max_outgoing_bytes:
            what = "an RPC response" if essential else "an event"
            self._send_close(1008, "peer is not reading: outgoing queue full")
            self._move(Trigger.PROTOCOL_ERROR)
            self._report_closed(
                1008,
                f"outgoing queue over {self.limits.max_outgoing_bytes} bytes while queueing {what}",
                RemoteProtocolError("peer does not read its messages", 1008),
            )
            raise LocalProtocolError(
                f"connection closed (1008): {what} did not fit the outgoing queue"
            )
        self._queue(frame)

    def _send_close(self, code: int, reason: str) -> None:
        if self._reader is not None:
            self._queue(self._frame(Opcode.CLOSE, close_payload(code, reason)))
        self._close_sent_at = self._last_received

    def _report_closed(self, code: int | None, reason: str, error: ProtocolError | None) -> None:
        if self._closed_reported:
            return
        self._closed_reported = True
        self._on_end()
        self._events.append(ConnectionClosed(code, reason, error))

    def _on_end(self) -> None:
        """Role hook: the connection ended (fail pending calls, ...)."""

    def _fail(self, error: ProtocolError, *, send: bool = True) -> None:
        """A protocol error: queue our close frame, enter ERROR, report it."""
        log.debug("closing with %d: %s", error.close_code, error)
        if send and self._reader is not None and self.state is ConnectionState.OPEN:
            payload = close_payload(error.close_code, str(error)[:100])
            self._queue(self._frame(Opcode.CLOSE, payload))
        self._move(Trigger.PROTOCOL_ERROR)
        self._report_closed(error.close_code, str(error), error)

    def _lost(self, reason: str) -> None:
        self._move(Trigger.CONNECTION_LOST)
        self._report_closed(_ABNORMAL, reason, None)

    def _ignore(self, reason: str) -> None:
        self.ignored_messages += 1
        log.debug("ignored message: %s", reason)
        self._events.append(MessageIgnored(reason))

    def _start_frames(self, trailing: bytes) -> None:
        self._reader = FrameReader(
            expect_masked=not self.is_client, max_message_size=self.limits.max_message_size
        )
        if trailing:
            self._receive_frames(trailing)

    def _receive_frames(self, data: bytes) -> None:
        reader = self._reader
        assert reader is not None
        try:
            frames = reader.feed(data)
        except ProtocolError as exc:
            self._fail(exc)
            return
        for frame in frames:
            opcode = frame.opcode
            if opcode is Opcode.BINARY:
                if self.state is ConnectionState.OPEN:
                    try:
                        self._receive_message(frame.payload)
                    except MessageTooLarge as exc:
                        self._fail(exc)
            elif opcode is Opcode.TEXT:
                self._ignore("text message")
            elif opcode is Opcode.PING:
                if self.state is ConnectionState.OPEN:
                    self._queue(self._frame(Opcode.PONG, frame.payload))
            elif opcode is Opcode.PONG:
                self._ping_sent_at = None
            else:
                self._receive_close(frame.close_code, frame.close_reason)
            if self.state in (ConnectionState.CLOSED, ConnectionState.ERROR):
                return

    def _receive_close(self, code: int | None, reason: str) -> None:
        if self.state is ConnectionState.OPEN:
            # echo the peer's code and reason, as RFC 6455 asks (an empty close stays empty)
            payload = close_payload(code, reason)
            self._queue(self._frame(Opcode.CLOSE, payload))
            self._move(Trigger.CLOSE_RECEIVED)
            self._move(Trigger.CLOSE_SENT)
        else:
            self._move(Trigger.CLOSE_RECEIVED)
        self._report_closed(code if code is not None else 1005, reason, None)

    def _receive_message(self, payload: bytes) -> None:
        raise NotImplementedError

    def _receive_handshake(self, data: bytes) -> None:
        raise NotImplementedError


class ServerConnection(_Connection):
    """The server side of one HardLight connection.

    After :class:`HandshakeRequested`, call :meth:`accept` or :meth:`refuse`. Then
    :class:`CallReceived` events arrive; answer each with :meth:`send_response`.
    """

    is_client = False

    def __init__(self, limits: Limits | None = None, now: float | None = None) -> None:
        super().__init__(limits, now)
        self._http = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.limits.max_handshake_size
        )
        self._request: h11.Request | None = None
        self._in_flight = ServerInFlightTable()

    # -- handshake -----------------------------------------------------------------------------

    def _receive_handshake(self, data: bytes) -> None:
        if self._request is not None:  # waiting for accept()/refuse(): keep the bytes
            self._http.receive_data(data)
            return
        self._http.receive_data(data)
        try:
            event = self._http.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            self._refuse_now(status, f"bad HTTP request: {exc}")
            return
        if event is h11.NEED_DATA:
            return
        if not isinstance(event, h11.Request):
            self._refuse_now(400, "expected an HTTP upgrade request")
            return
        head_size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
        if head_size > self.limits.max_handshake_size:
            self._refuse_now(431, f"request head over {self.limits.max_handshake_size} bytes")
            return
        problem = check_upgrade_request(event)
        if problem is not None:
            self._refuse_now(400, problem)
            return
        self._request = event
        headers = tuple((bytes(k), bytes(v)) for k, v in event.headers)
        level = parse_compression_level(header_value(list(headers), b"x-hl-compress"))
        self.compression_level = level
        origin = header_value(list(headers), b"origin")
        self._events.append(
            HandshakeRequested(
                path=event.target.decode("latin-1"),
                headers=headers,
                origin=origin.decode("latin-1") if origin is not None else None,
                compression_level=level,
            )
        )

    def accept(self) -> None:
        """Answer 101 ``hl/2``; calls flow from now on."""
        request = self._request
        if self.state is not ConnectionState.CONNECTING or request is None:
            raise LocalProtocolError("accept() needs a pending HandshakeRequested")
        key = header_value(list(request.headers), b"sec-websocket-key")
        assert key is not None
        self._queue(self._http.send(switching_response(key, self.compression_level)) or b"")
        trailing, _closed = self._http.trailing_data
        self._move(Trigger.ACCEPTED)
        self._start_frames(bytes(trailing))

    def refuse(self, status: int = 400, reason: str = "refused") -> None:
        """Answer the upgrade with ``status`` and ``reason``, then close: no call is served."""
        if self.state is not ConnectionState.CONNECTING:
            raise LocalProtocolError("refuse() is only possible during the handshake")
        self._refuse_now(status, reason)

    def _refuse_now(self, status: int, reason: str) -> None:
        body = (reason + "\n").encode()
        try:
            self._queue(self._http.send(refusal_response(status, body)) or b"")
            self._queue(self._http.send(h11.Data(data=body)) or b"")
            self._queue(self._http.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            # h11 cannot answer (e.g. the request line itself was unreadable): raw answer
            self._out.clear()
            self._queue(
                b"HTTP/1.1 %d Bad Request\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, len(body), body)
            )
        self._move(Trigger.REFUSED)
        self._report_closed(None, f"handshake refused ({status}): {reason}", None)

    # -- messages --------------------------------------------------------------------------

    def _receive_message(self, payload: bytes) -> None:
        try:
            message = unpack_client_message(payload, self.limits.max_inflated_size)
        except MessageTooLarge:
            raise
        except DecodeError as exc:
            self._ignore(f"undecodable message: {exc}")
            return
        if not self._in_flight.start(message.id):
            self._ignore(f"call id {message.id} is already in flight")
            return
        self._events.append(CallReceived(message.id, message.internal))

    def send_response(self, call_id: int, output: Ok[bytes] | Err[RpcHandlerError]) -> None:
        """Answer call ``call_id`` (frees the id)."""
        self._in_flight.finish(call_id)
        self._queue_message(
            pack(RPCResponse(call_id, output), self.compression_level), essential=True
        )

    def send_event(self, topic: Topic, payload: bytes) -> None:
        """Send an event (``payload`` is an rkyv archive) on ``topic``."""
        self._queue_message(pack(NewEvent(topic, payload), self.compression_level), essential=False)

    def send_state_change(self, updates: list[StateUpdate]) -> None:
        """Send the changed state fields in one message."""
        self._queue_message(pack(StateChange(updates), self.compression_level), essential=True)

    def send_frame(self, frame: bytes) -> None:
        """Send a whole frame from :func:`server_frame` (fan-out frames once per level)."""
        self._queue_frame(frame, essential=False)

    @property
    def calls_in_flight(self) -> int:
        """Calls received and not yet answered."""
        return len(self._in_flight)


def server_frame(payload: bytes) -> bytes:
    """The binary frame a server sends for a packed message (the same on every connection)."""
    return frame_bytes(Opcode.BINARY, payload, mask=False)


class ClientConnection(_Connection):
    """The client side of one HardLight connection; the upgrade request is queued at once."""

    is_client = True

    def __init__(
        self,
        host: str,
        *,
        path: str = "/",
        compression_level: int = 6,
        limits: Limits | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        now: float | None = None,
    ) -> None:
        super().__init__(limits, now)
        if not 0 <= compression_level <= 9:
            raise LocalProtocolError(f"compression level must be 0..9, got {compression_level}")
        self.client_level = compression_level
        self._http = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=self.limits.max_handshake_size
        )
        self._key = new_key(random_bytes(16))
        self._random = MaskKeySource(random_bytes)
        self._queue(
            self._http.send(build_client_request(host, self._key, compression_level, path)) or b""
        )
        self._calls = ClientCallTable()

    def _receive_handshake(self, data: bytes) -> None:
        self._http.receive_data(data)
        try:
            event = self._http.next_event()
        except h11.RemoteProtocolError as exc:
            self._fail(RemoteProtocolError(f"bad HTTP answer to the upgrade: {exc}"), send=False)
            return
        if event is h11.NEED_DATA:
            return
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            headers = [(bytes(k), bytes(v)) for k, v in event.headers]
            if header_value(headers, b"sec-websocket-protocol") != SUBPROTOCOL:
                self._fail(
                    RemoteProtocolError("server did not agree to subprotocol hl/2"), send=False
                )
                return
            if header_value(headers, b"sec-websocket-accept") != accept_token(self._key):
                self._fail(RemoteProtocolError("wrong Sec-WebSocket-Accept"), send=False)
                return
            self.compression_level = parse_compression_level(
                header_value(headers, b"x-hl-compress")
            )
            trailing, _closed = self._http.trailing_data
            self._move(Trigger.ACCEPTED)
            self._events.append(Connected(self.compression_level, tuple(headers)))
            self._start_frames(bytes(trailing))
            return
        if isinstance(event, h11.Response):
            reason = event.reason.decode("latin-1")
            self._move(Trigger.REFUSED)
            self._events.append(HandshakeRefused(event.status_code, reason))
            self._report_closed(None, f"handshake refused: {event.status_code} {reason}", None)
            return
        self._fail(RemoteProtocolError(f"unexpected answer to the upgrade: {event!r}"), send=False)

    def start_call(self, internal: bytes) -> int:
        """Queue a call (``internal`` = archived RpcCall); returns its id.

        Raises ClientNotConnected when not open and TooManyCallsInFlight when all
        256 ids are taken; nothing is queued then.
        """
        if self.state is not ConnectionState.OPEN:
            raise ClientNotConnected(f"the connection is {self.state.value}")
        call_id = self._calls.allocate()
        try:
            self._queue_message(
                pack(RPCRequest(call_id, internal), self.client_level), essential=True
            )
        except LocalProtocolError:
            self._calls.release(call_id)
            raise ClientNotConnected("the connection closed while queueing the call") from None
        return call_id

    def abandon_call(self, call_id: int) -> None:
        """The caller gave up on ``call_id``; its late answer will be dropped."""
        self._calls.abandon(call_id)

    @property
    def calls_in_flight(self) -> int:
        """Calls sent and not yet answered (abandoned ones included)."""
        return len(self._calls)

    def _receive_message(self, payload: bytes) -> None:
        try:
            message = unpack_server_message(payload, self.limits.max_inflated_size)
        except MessageTooLarge:
            raise
        except DecodeError as exc:
            self._ignore(f"undecodable message: {exc}")
            return
        if isinstance(message, RPCResponse):
            if self._calls.release(message.id):
                self._events.append(ResponseReceived(message.id, message.output))
            else:
                self._ignore(f"answer to call {message.id}, which nobody waits for")
        elif isinstance(message, NewEvent):
            self._events.append(EventReceived(message.topic, message.payload))
        else:
            self._events.append(StateChanged(message.updates))

    def _on_end(self) -> None:
        for call_id in self._calls.fail_all():
            self._events.append(
                CallFailed(call_id, ClientNotConnected("the connection ended before the answer"))
            )
