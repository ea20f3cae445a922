"""The WebSocket transport: HTTP upgrade, frames, ping/pong, close, timers and bounds.

It knows nothing of HardLight messages: a binary message in is reported as
:class:`MessageReceived` with its payload, and :meth:`send_message` frames a payload
out. The session layer (:mod:`._session`) sits on top; :mod:`._connection` joins
the two. Bytes in (``receive_data``), events out (``next_event``), bytes to write
(``data_to_send``); time only as arguments (``now``, ``get_timer``/``handle_timer``).

Every byte queued counts against ``Limits.max_outgoing_bytes``, control frames
included; a pong not yet written is replaced by the answer to a newer ping, so a
ping flood on a connection that does not read queues one pong, not one per ping.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable

import h11
import msgspec

from ._errors import (
    HardLightError,
    LocalProtocolError,
    PeerNotReading,
    ProtocolError,
    RemoteProtocolError,
)
from ._events import (
    Connected,
    ConnectionClosed,
    HandshakeRefused,
    HandshakeRequested,
    MessageIgnored,
)
from ._framing import FrameReader, MaskKeySource, Opcode, close_payload, frame_bytes
from ._handshake import (
    SUBPROTOCOL,
    accept_token,
    build_client_request,
    check_upgrade_request,
    chosen_subprotocol,
    header_value,
    new_key,
    parse_compression_level,
    refusal_response,
    switching_response,
)
from ._limits import Limits
from ._state import ConnectionState, Trigger, transition

__all__ = ["ClientTransport", "MessageReceived", "ServerTransport", "TransportEvent"]

log = logging.getLogger("hardlight")

_ABNORMAL = 1006


class MessageReceived(msgspec.Struct, frozen=True):
    """A whole binary WebSocket message arrived (a packed HardLight message)."""

    payload: bytes


TransportEvent = (
    HandshakeRequested
    | Connected
    | HandshakeRefused
    | MessageReceived
    | MessageIgnored
    | ConnectionClosed
)


class _Transport:
    """What both roles share: state, framing, bounds, timers and the outgoing buffer."""

    is_client = False

    def __init__(self, limits: Limits | None, now: float | None) -> None:
        self.limits = limits or Limits()
        self.state = ConnectionState.CONNECTING
        self.compression_level = 6
        #: messages dropped as the reference drops them (text messages)
        self.ignored_messages = 0
        self.outgoing_size = 0
        self._events: deque[TransportEvent] = deque()
        self._out: list[bytes | bytearray] = []
        self._pong_at: int | None = None  # index in _out of a pong not yet written
        self._reader: FrameReader | None = None
        self._started = now
        self._last_received = now
        self._ping_sent_at: float | None = None
        self._close_sent_at: float | None = None
        self._random: Callable[[int], bytes] = os.urandom

    # -- driving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float | None = None) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed (EOF)."""
        if now is not None:
            if self._started is None:
                self._started = now
            self._last_received = now
            self._ping_sent_at = None
        if self.state.ended:
            return  # after the end everything is dropped (the socket is being closed)
        if not data:
            self._eof()
        elif self.state is ConnectionState.CONNECTING:
            self._receive_handshake(data)
        else:
            self._receive_frames(data)

    def next_event(self) -> TransportEvent | None:
        """The next event, or None when more data is needed."""
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket (empties the buffer)."""
        out = self._out
        if not out:
            return b""
        data = b"".join(out) if len(out) > 1 else bytes(out[0])
        out.clear()
        self._pong_at = None
        self.outgoing_size = 0
        return data

    def send_failed(self) -> None:
        """The adapter could not write what it was given: the connection is lost."""
        self._out.clear()
        self._pong_at = None
        self.outgoing_size = 0
        self._lost("connection lost (write failed)")

    def send_message(self, payload: bytes) -> bool:
        """Queue one binary message; False if the peer stopped reading (closed with 1008)."""
        return self.send_frame(self._frame(Opcode.BINARY, payload))

    def send_frame(self, frame: bytes) -> bool:
        """Queue a whole frame (from :func:`server_frame`: fan-out frames once per level).

        Returns False, having closed the connection with 1008, when the frame does
        not fit the outgoing bound: the peer does not read what it is sent.
        """
        if self.state is not ConnectionState.OPEN:
            raise LocalProtocolError(f"cannot send: the connection is {self.state.value}")
        return self._queue(frame)

    def fail(self, error: ProtocolError) -> None:
        """The layer above found a protocol error (a message inflating past its bound):
        close with the error's code."""
        if not self.state.ended:
            self._fail(error)

    def close(self, code: int = 1000, reason: str = "", now: float | None = None) -> None:
        """Start the close handshake (or end a connection still in its handshake).

        ``now`` starts the close timeout (without it, the time of the last read does).
        """
        if self.state is ConnectionState.CONNECTING:
            self._move(Trigger.CLOSE_SENT, None, reason or "closed during the handshake")
            return
        if self.state is not ConnectionState.OPEN:
            raise LocalProtocolError(f"cannot close a connection that is {self.state.value}")
        self._send_close(code, reason, now)
        self._move(Trigger.CLOSE_SENT)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should run next (None: nothing pending or no clock yet)."""
        limits = self.limits
        if self._started is None:
            return None
        state = self.state
        if state is ConnectionState.CONNECTING:
            return self._started + limits.handshake_timeout
        if state is ConnectionState.CLOSING and self._close_sent_at is not None:
            return self._close_sent_at + limits.close_timeout
        if state is ConnectionState.OPEN and self._last_received is not None:
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
        state = self.state
        if state is ConnectionState.CONNECTING:
            self._handshake_timed_out()
        elif state is ConnectionState.CLOSING:
            self._move(
                Trigger.CLOSE_COMPLETED, None, "peer did not answer the close frame in time"
            )
        elif state is ConnectionState.OPEN:
            if self._ping_sent_at is None:
                self._ping_sent_at = now
                self._queue(self._frame(Opcode.PING, b"hl"))
            else:
                self._fail(RemoteProtocolError("peer idle: no answer to a ping", 1001))

    # -- internals ---------------------------------------------------------------------------

    def _move(
        self,
        trigger: Trigger,
        code: int | None = None,
        reason: str = "",
        error: HardLightError | None = None,
    ) -> None:
        """Take a transition; entering an end state reports :class:`ConnectionClosed` once."""
        before = self.state
        self.state = after = transition(before, trigger)
        if after.ended and not before.ended:
            self._on_end()
            self._events.append(ConnectionClosed(code, reason, error))

    def _on_end(self) -> None:
        """Role hook: the connection ended."""

    def _eof(self) -> None:
        self._lost("connection lost (EOF without a close frame)")

    def _handshake_timed_out(self) -> None:
        self._fail(RemoteProtocolError("handshake not completed in time", 1002), send=False)

    def _frame(self, opcode: Opcode, payload: bytes) -> bytes:
        return frame_bytes(opcode, payload, mask=self.is_client, random_bytes=self._random)

    def _append(self, data: bytes | bytearray) -> None:
        """Queue bytes of a bounded size of our own (handshake answers, close frames)."""
        self._out.append(data)
        self.outgoing_size += len(data)

    def _queue(self, data: bytes | bytearray) -> bool:
        """Queue bytes within the outgoing bound (closes with 1008 past it)."""
        size = len(data)
        if self.outgoing_size + size > self.limits.max_outgoing_bytes:
            self._peer_not_reading()
            return False
        self._out.append(data)
        self.outgoing_size += size
        return True

    def _peer_not_reading(self) -> None:
        limit = self.limits.max_outgoing_bytes
        log.debug("peer does not read: over %d bytes queued; closing with 1008", limit)
        # the goodbye goes past the bound on purpose: it is small and it is the last frame
        if self._reader is not None:
            self._append(self._frame(Opcode.CLOSE, close_payload(1008, "not reading")))
        self._move(
            Trigger.PEER_NOT_READING,
            1008,
            f"outgoing queue over {limit} bytes: the peer does not read",
            PeerNotReading(f"the peer did not read: over {limit} bytes queued for it"),
        )

    def _send_close(self, code: int, reason: str, now: float | None) -> None:
        if self._reader is not None:
            self._append(self._frame(Opcode.CLOSE, close_payload(code, reason)))
        self._close_sent_at = now if now is not None else self._last_received

    def _fail(self, error: ProtocolError, *, send: bool = True) -> None:
        """A protocol error: queue our close frame, enter ERROR, report it."""
        log.debug("closing with %d: %s", error.close_code, error)
        if send and self._reader is not None and self.state is ConnectionState.OPEN:
            payload = close_payload(error.close_code, str(error)[:100])
            self._append(self._frame(Opcode.CLOSE, payload))
        self._move(Trigger.PROTOCOL_ERROR, error.close_code, str(error), error)

    def _lost(self, reason: str) -> None:
        self._move(Trigger.CONNECTION_LOST, _ABNORMAL, reason)

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
        events = self._events
        for frame in frames:
            opcode = frame.opcode
            if opcode is Opcode.BINARY:
                if self.state is ConnectionState.OPEN:
                    events.append(MessageReceived(frame.payload))
            elif opcode is Opcode.TEXT:
                self.ignored_messages += 1
                events.append(MessageIgnored("text message"))
            elif opcode is Opcode.PING:
                if self.state is ConnectionState.OPEN:
                    self._pong(frame.payload)
            elif opcode is Opcode.PONG:
                self._ping_sent_at = None
            else:
                self._receive_close(frame.close_code, frame.close_reason)
            if self.state.ended:
                return

    def _pong(self, payload: bytes) -> None:
        frame = self._frame(Opcode.PONG, payload)
        at = self._pong_at
        if at is not None:  # an unwritten pong: only the latest ping needs an answer
            grown = self.outgoing_size + len(frame) - len(self._out[at])
            if grown > self.limits.max_outgoing_bytes:
                self._peer_not_reading()
                return
            self.outgoing_size = grown
            self._out[at] = frame
            return
        if self._queue(frame):
            self._pong_at = len(self._out) - 1

    def _receive_close(self, code: int | None, reason: str) -> None:
        if self.state is ConnectionState.OPEN:
            # echo the peer's code and reason, as RFC 6455 asks (an empty close stays empty)
            self._append(self._frame(Opcode.CLOSE, close_payload(code, reason)))
        self._move(Trigger.CLOSE_RECEIVED, code if code is not None else 1005, reason)

    def _receive_handshake(self, data: bytes) -> None:
        raise NotImplementedError


class ServerTransport(_Transport):
    """The server side of a WebSocket connection speaking ``hl/2``.

    After :class:`HandshakeRequested`, call :meth:`accept` or :meth:`refuse`.
    """

    is_client = False

    def __init__(self, limits: Limits | None = None, now: float | None = None) -> None:
        super().__init__(limits, now)
        self._http = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.limits.max_handshake_size
        )
        self._request: h11.Request | None = None

    def _receive_handshake(self, data: bytes) -> None:
        self._http.receive_data(data)
        if self._request is not None:  # waiting for accept()/refuse(): keep the bytes
            return
        try:
            event = self._http.next_event()
        except h11.RemoteProtocolError as exc:
            self._refuse_now(exc.error_status_hint, f"bad HTTP request: {exc}")
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
        """Answer 101 ``hl/2``; messages flow from now on."""
        request = self._request
        if self.state is not ConnectionState.CONNECTING or request is None:
            raise LocalProtocolError("accept() needs a pending HandshakeRequested")
        headers = list(request.headers)
        key = header_value(headers, b"sec-websocket-key")
        subprotocol = chosen_subprotocol(headers)
        assert key is not None and subprotocol is not None  # check_upgrade_request made sure
        answer = switching_response(key, self.compression_level, subprotocol)
        self._append(self._http.send(answer) or b"")
        trailing, _closed = self._http.trailing_data
        self._move(Trigger.ACCEPTED)
        self._start_frames(bytes(trailing))

    def refuse(self, status: int = 400, reason: str = "refused") -> None:
        """Answer the upgrade with ``status`` and ``reason``, then close."""
        if self.state is not ConnectionState.CONNECTING:
            raise LocalProtocolError("refuse() is only possible during the handshake")
        self._refuse_now(status, reason)

    def _refuse_now(self, status: int, reason: str) -> None:
        body = (reason + "\n").encode()
        try:
            self._append(self._http.send(refusal_response(status, body)) or b"")
            self._append(self._http.send(h11.Data(data=body)) or b"")
            self._append(self._http.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            # h11 cannot answer (e.g. the request line itself was unreadable): raw answer
            self._out.clear()
            self.outgoing_size = 0
            self._append(
                b"HTTP/1.1 %d Bad Request\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, len(body), body)
            )
        self._move(Trigger.REFUSED, None, f"handshake refused ({status}): {reason}")


class ClientTransport(_Transport):
    """The client side: the upgrade request is queued at once."""

    is_client = True

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
        super().__init__(limits, now)
        if not 0 <= compression_level <= 9:
            raise LocalProtocolError(f"compression level must be 0..9, got {compression_level}")
        self.client_level = compression_level
        self._http = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=self.limits.max_handshake_size
        )
        self._refusal: tuple[int, str] | None = None  # status and phrase, body still coming
        self._refusal_body: list[bytes] = []
        self._key = new_key(random_bytes(16))
        self._random = MaskKeySource(random_bytes)
        request = build_client_request(host, self._key, compression_level, path)
        if extra_headers:
            request = h11.Request(
                method=request.method,
                target=request.target,
                headers=[*request.headers, *extra_headers],
            )
        self._append(self._http.send(request) or b"")

    def _receive_handshake(self, data: bytes) -> None:
        self._http.receive_data(data)
        if self._refusal is not None:
            self._read_refusal_body()
            return
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
            # our servers put the reason in a body with a length: read it to its end. The
            # reference answers with no length and keeps the socket open, so a body without
            # one is not waited for (it would end only at EOF).
            self._refusal = (event.status_code, event.reason.decode("latin-1"))
            framed = any(k in (b"content-length", b"transfer-encoding") for k, _ in event.headers)
            self._read_refusal_body(wait=framed)
            return
        self._fail(RemoteProtocolError(f"unexpected answer to the upgrade: {event!r}"), send=False)

    def _read_refusal_body(self, wait: bool = True) -> None:
        """Collect the refusal's body (at most 1 KiB) until its end, then report it; with
        ``wait`` False, report with what is here already."""
        try:
            while True:
                event = self._http.next_event()
                if isinstance(event, h11.Data):
                    self._refusal_body.append(bytes(event.data))
                    if sum(map(len, self._refusal_body)) > 1024:
                        break
                elif event is h11.NEED_DATA:
                    if wait:
                        return  # more of the body to come (or EOF, or the handshake timeout)
                    break
                else:
                    break
        except h11.RemoteProtocolError:
            pass
        self._refused()

    def _refused(self) -> None:
        assert self._refusal is not None
        status, phrase = self._refusal
        body = b"".join(self._refusal_body)[:1024].decode("utf-8", "replace").strip()
        self._events.append(HandshakeRefused(status, body or phrase))
        self._move(Trigger.REFUSED, None, f"handshake refused: {status} {phrase}")

    def _eof(self) -> None:
        if self._refusal is not None:
            self._refused()  # the server closed after (part of) its refusal's body
        else:
            super()._eof()

    def _handshake_timed_out(self) -> None:
        if self._refusal is not None:
            self._refused()
        else:
            super()._handshake_timed_out()

