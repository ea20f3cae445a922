"""The HardLight session: whole messages in and out, without any transport.

A session is fed the payload of each binary WebSocket message
(``receive_message``) and queues packed messages for whoever frames them
(``messages_to_send``). It owns the call ids, the ignore rules and the message
order; it needs no handshake or framing, so it runs behind an ASGI server or a
browser's WebSocket as well as behind :mod:`._transport`.

Its lifecycle is one transition: ``ACTIVE --end--> ENDED``
(:data:`SESSION_TRANSITIONS`). An ended session drops what it is fed and refuses
to send.
"""

from __future__ import annotations

import enum
import logging
from collections import deque

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
    RpcHandlerError,
)
from ._events import (
    CallFailed,
    CallReceived,
    EventReceived,
    MessageIgnored,
    ResponseReceived,
    StateChanged,
)
from ._limits import Limits
from ._types import Err, Ok

__all__ = [
    "SESSION_TRANSITIONS",
    "ClientMessageSession",
    "ServerMessageSession",
    "SessionState",
]

log = logging.getLogger("hardlight")


class SessionState(enum.Enum):
    """Where a session is: messages flow while ACTIVE."""

    ACTIVE = "active"
    ENDED = "ended"


class SessionTrigger(enum.Enum):
    """What moves a session."""

    END = "the connection below ended"


SESSION_TRANSITIONS: dict[tuple[SessionState, SessionTrigger], SessionState] = {
    (SessionState.ACTIVE, SessionTrigger.END): SessionState.ENDED,
    (SessionState.ENDED, SessionTrigger.END): SessionState.ENDED,
}

ServerSessionEvent = CallReceived | MessageIgnored
ClientSessionEvent = ResponseReceived | EventReceived | StateChanged | MessageIgnored | CallFailed


class _MessageSession:
    """What both roles share: lifecycle, the event queue and the outbox of packed messages."""

    def __init__(self, limits: Limits | None, compression_level: int) -> None:
        self.limits = limits or Limits()
        #: the level this side packs its messages at
        self.compression_level = compression_level
        self.state = SessionState.ACTIVE
        #: messages dropped as the reference drops them (undecodable, duplicate id, ...)
        self.ignored_messages = 0
        self._outbox: list[bytes] = []

    @property
    def active(self) -> bool:
        """True until :meth:`end`."""
        return self.state is SessionState.ACTIVE

    def messages_to_send(self) -> list[bytes]:
        """Packed messages to send, in order, one WebSocket binary message each."""
        out = self._outbox
        self._outbox = []
        return out

    def end(self) -> None:
        """The connection below ended: nothing more is received or sent."""
        self.state = SESSION_TRANSITIONS[self.state, SessionTrigger.END]

    def _check_active(self) -> None:
        if self.state is not SessionState.ACTIVE:
            raise LocalProtocolError("cannot send: the session has ended")

    def _ignored(self, reason: str) -> MessageIgnored:
        self.ignored_messages += 1
        log.debug("ignored message: %s", reason)
        return MessageIgnored(reason)


class ServerMessageSession(_MessageSession):
    """The server side: calls in, responses, events and state changes out.

    A call id is in flight from its request's arrival until its response has been
    handed on by :meth:`messages_to_send`; a request reusing it meanwhile is dropped
    (logged at debug, counted in ``duplicate_calls``), as the reference does.
    """

    def __init__(self, limits: Limits | None = None, compression_level: int = 6) -> None:
        super().__init__(limits, compression_level)
        self.in_flight = ServerInFlightTable()
        self.duplicate_calls = 0
        self._events: deque[ServerSessionEvent] = deque()
        self._answered: list[int] = []

    def receive_message(self, payload: bytes) -> None:
        """Feed one binary message; MessageTooLarge if it inflates past the limit."""
        event = self.read_message(payload)
        if event is not None:
            self._events.append(event)

    def read_message(self, payload: bytes) -> ServerSessionEvent | None:
        """:meth:`receive_message` returning its event instead of queueing it (for a
        connection that keeps one queue of its own)."""
        if self.state is not SessionState.ACTIVE:
            return None
        try:
            message = unpack_client_message(payload, self.limits.max_inflated_size)
        except DecodeError as exc:  # MessageTooLarge is not one: it closes the connection
            return self._ignored(f"undecodable message: {exc}")
        if not self.in_flight.start(message.id):
            self.duplicate_calls += 1
            return self._ignored(f"call id {message.id} is already in flight")
        return CallReceived(message.id, message.internal)

    def next_event(self) -> ServerSessionEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def send_response(self, call_id: int, output: Ok[bytes] | Err[RpcHandlerError]) -> None:
        """Answer call ``call_id``; its id is free once the answer is handed on."""
        self._outbox.append(self.pack_response(call_id, output))

    def send_event(self, topic: Topic, payload: bytes) -> None:
        """Send an event (``payload`` is an rkyv archive) on ``topic``."""
        self._outbox.append(self.pack_event(topic, payload))

    def send_state_change(self, updates: list[StateUpdate]) -> None:
        """Send the changed state fields in one message."""
        self._outbox.append(self.pack_state_change(updates))

    # the send_* methods without the outbox, for a connection that frames at once

    def pack_response(self, call_id: int, output: Ok[bytes] | Err[RpcHandlerError]) -> bytes:
        """The packed answer to ``call_id`` (its id is free after :meth:`release_answered`)."""
        self._check_active()
        self._answered.append(call_id)
        return pack(RPCResponse(call_id, output), self.compression_level)

    def pack_event(self, topic: Topic, payload: bytes) -> bytes:
        """The packed event."""
        self._check_active()
        return pack(NewEvent(topic, payload), self.compression_level)

    def pack_state_change(self, updates: list[StateUpdate]) -> bytes:
        """The packed state change."""
        self._check_active()
        return pack(StateChange(updates), self.compression_level)

    def messages_to_send(self) -> list[bytes]:
        """Packed messages to send, in order; answered call ids become free."""
        self.release_answered()
        return super().messages_to_send()

    def take_messages(self) -> list[bytes]:
        """The queued messages, keeping answered ids in flight until :meth:`release_answered`
        (for a transport that writes them later: ids stay taken until then)."""
        return super().messages_to_send()

    def release_answered(self) -> None:
        """The answers queued so far were handed to the transport: free their ids."""
        if self._answered:
            finish = self.in_flight.finish
            for call_id in self._answered:
                finish(call_id)
            self._answered.clear()

    @property
    def calls_in_flight(self) -> int:
        """Calls received whose answer has not been handed on yet."""
        return len(self.in_flight)

    def end(self) -> None:
        """The connection below ended."""
        super().end()
        self._answered.clear()
        self._outbox.clear()


class ClientMessageSession(_MessageSession):
    """The client side: calls out (ids 0..255, lowest free), answers, events, state in."""

    def __init__(self, limits: Limits | None = None, compression_level: int = 6) -> None:
        super().__init__(limits, compression_level)
        self._calls = ClientCallTable()
        self._events: deque[ClientSessionEvent] = deque()

    def start_call(self, internal: bytes) -> int:
        """Queue a call (``internal`` = archived RpcCall); returns its id.

        Raises ClientNotConnected after :meth:`end` and TooManyCallsInFlight when all
        256 ids are taken; nothing is queued then.
        """
        call_id, packed = self.pack_call(internal)
        self._outbox.append(packed)
        return call_id

    def pack_call(self, internal: bytes) -> tuple[int, bytes]:
        """:meth:`start_call` without the outbox: the call's id and its packed request."""
        if self.state is not SessionState.ACTIVE:
            raise ClientNotConnected("the connection has ended")
        call_id = self._calls.allocate()
        return call_id, pack(RPCRequest(call_id, internal), self.compression_level)

    def abandon_call(self, call_id: int) -> None:
        """The caller gave up on ``call_id``; its late answer will be dropped."""
        self._calls.abandon(call_id)

    def forget_call(self, call_id: int) -> None:
        """The call could not be sent after all: free its id at once."""
        self._calls.release(call_id)

    @property
    def calls_in_flight(self) -> int:
        """Calls sent and not yet answered (abandoned ones included)."""
        return len(self._calls)

    def receive_message(self, payload: bytes) -> None:
        """Feed one binary message; MessageTooLarge if it inflates past the limit."""
        event = self.read_message(payload)
        if event is not None:
            self._events.append(event)

    def read_message(self, payload: bytes) -> ClientSessionEvent | None:
        """:meth:`receive_message` returning its event instead of queueing it."""
        if self.state is not SessionState.ACTIVE:
            return None
        try:
            message = unpack_server_message(payload, self.limits.max_inflated_size)
        except DecodeError as exc:
            return self._ignored(f"undecodable message: {exc}")
        if isinstance(message, RPCResponse):
            if self._calls.release(message.id):
                return ResponseReceived(message.id, message.output)
            return self._ignored(f"answer to call {message.id}, which nobody waits for")
        if isinstance(message, NewEvent):
            return EventReceived(message.topic, message.payload)
        return StateChanged(message.updates)

    def next_event(self) -> ClientSessionEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def end(self) -> None:
        """The connection below ended: every call still awaited fails (CallFailed)."""
        if self.state is SessionState.ACTIVE:
            for call_id in self._calls.fail_all():
                self._events.append(
                    CallFailed(
                        call_id, ClientNotConnected("the connection ended before the answer")
                    )
                )
        super().end()
        self._outbox.clear()
