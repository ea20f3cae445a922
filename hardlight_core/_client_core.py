"""The client engine: typed calls, results, events and the state mirror, without I/O.

An adapter connects a socket, writes :meth:`ClientCore.data_to_send`, feeds what
it reads to :meth:`ClientCore.receive_data` and turns the returned outcomes into
resolved futures and delivered events. Call ids, timeouts' bookkeeping, decoding
and error mapping are all decided here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar, overload

import msgspec

from ._codec import decode
from ._conn_state import StateMirror
from ._connection import ClientConnection
from ._envelope import Topic
from ._errors import (
    ClientDecodeError,
    ClientEncodeError,
    ClientNotConnected,
    ConnectionRefused,
    HardLightError,
    RpcError,
    RpcHandlerError,
)
from ._events import (
    CallFailed,
    Connected,
    ConnectionClosed,
    EventReceived,
    HandshakeRefused,
    ResponseReceived,
    StateChanged,
)
from ._limits import Limits
from ._service import ServiceSpec
from ._types import Ok

__all__ = [
    "CallOutcome",
    "ClientCore",
    "ClientOpened",
    "ClientClosed",
    "ClientOutcome",
    "EventDelivered",
    "StateUpdated",
]

T = TypeVar("T")


class CallOutcome(msgspec.Struct, frozen=True):
    """Call ``call_id`` ended: ``error`` is None and ``value`` the result, or ``error`` is set."""

    call_id: int
    value: Any = None
    error: RpcError | None = None


class EventDelivered(msgspec.Struct, frozen=True):
    """The server sent an event; decode ``payload`` with the app's event type."""

    topic: Topic
    payload: bytes

    @overload
    def decode(self, event_type: type[T]) -> T: ...
    @overload
    def decode(self, event_type: Any) -> Any: ...

    def decode(self, event_type: Any) -> Any:
        """The payload decoded as ``event_type`` (raises DecodeError if it is not one).

        Typed for a class (``event.decode(Incremented) -> Incremented``); a union such as
        ``CounterEvent`` gives ``Any``: annotate the result (``ev: CounterEvent = ...``)."""
        return decode(self.payload, event_type)


class StateUpdated(msgspec.Struct, frozen=True):
    """The state mirror changed (``indexes`` of the fields that were updated)."""

    indexes: tuple[int, ...]


class ClientOpened(msgspec.Struct, frozen=True):
    """The handshake succeeded; the server compresses at ``compression_level``."""

    compression_level: int


class ClientClosed(msgspec.Struct, frozen=True):
    """The connection ended (refused handshake: ``status_code`` is set)."""

    code: int | None
    reason: str
    error: Exception | None = None
    status_code: int | None = None

    def exception(self) -> HardLightError:
        """What a caller waiting on the connection should raise: ConnectionRefused for a
        refused handshake, else ClientNotConnected."""
        if self.status_code is not None:
            return ConnectionRefused(self.status_code, self.reason)
        return ClientNotConnected(f"connection closed ({self.code} {self.reason})".strip())


ClientOutcome = CallOutcome | EventDelivered | StateUpdated | ClientOpened | ClientClosed


class ClientCore:
    """One client connection of a service: encode calls, decode results, mirror the state."""

    def __init__(
        self,
        service: type[Any],
        host: str,
        *,
        state_type: type[Any] | None = None,
        compression_level: int = 6,
        limits: Limits | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        path: str = "/",
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
        now: float | None = None,
    ) -> None:
        self.spec = ServiceSpec.of(service)
        self.connection = ClientConnection(
            host,
            path=path,
            compression_level=compression_level,
            extra_headers=extra_headers,
            limits=limits or Limits(),
            random_bytes=random_bytes,
            now=now,
        )
        state_type = state_type or getattr(service, "State", None)
        self.mirror: StateMirror[Any] | None = (
            StateMirror(state_type) if state_type is not None else None
        )
        self._methods: dict[int, str] = {}

    @property
    def state(self) -> Any:
        """The mirror of the server-side connection state (None if the service has none)."""
        return self.mirror.value if self.mirror is not None else None

    def start_call(self, method: str, args: tuple[Any, ...]) -> int:
        """Encode and queue a call; returns its id.

        Raises ClientEncodeError (bad arguments), TooManyCallsInFlight (256 pending)
        or ClientNotConnected; nothing is sent in those cases.
        """
        spec = self.spec.method(method)
        try:
            internal = self.spec.encode_call(method, *args)
        except Exception as exc:
            raise ClientEncodeError(f"{method}{args!r}: {exc}") from exc
        call_id = self.connection.start_call(internal)
        self._methods[call_id] = spec.name
        return call_id

    def abandon_call(self, call_id: int) -> None:
        """The caller gave up (timeout/cancel): drop the late answer when it comes."""
        self._methods.pop(call_id, None)
        self.connection.abandon_call(call_id)

    def receive_data(self, data: bytes, now: float | None = None) -> list[ClientOutcome]:
        """Feed bytes read from the socket (b"" at EOF); returns what happened."""
        self.connection.receive_data(data, now)
        return self._drain()

    def handle_timer(self, now: float) -> list[ClientOutcome]:
        """Let deadlines (handshake, pings, idle) act."""
        self.connection.handle_timer(now)
        return self._drain()

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next run."""
        return self.connection.get_timer()

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket."""
        return self.connection.data_to_send()

    def close(self) -> None:
        """Start the close handshake."""
        self.connection.close()

    def _drain(self) -> list[ClientOutcome]:
        out: list[ClientOutcome] = []
        refused = False  # a refusal is followed by its ConnectionClosed: report it once
        while True:
            event = self.connection.next_event()
            if event is None:
                return out
            if isinstance(event, ResponseReceived):
                out.append(self._result(event))
            elif isinstance(event, EventReceived):
                out.append(EventDelivered(event.topic, event.payload))
            elif isinstance(event, StateChanged):
                if self.mirror is not None:
                    indexes = self.mirror.apply(event.updates)
                    out.append(StateUpdated(tuple(indexes)))
            elif isinstance(event, CallFailed):
                self._methods.pop(event.call_id, None)
                out.append(CallOutcome(event.call_id, error=event.error))
            elif isinstance(event, Connected):
                out.append(ClientOpened(event.compression_level))
            elif isinstance(event, HandshakeRefused):
                refused = True
                out.append(ClientClosed(None, event.reason, None, status_code=event.status_code))
            elif isinstance(event, ConnectionClosed) and not refused:
                out.append(ClientClosed(event.code, event.reason, event.error))

    def _result(self, event: ResponseReceived) -> CallOutcome:
        method = self._methods.pop(event.call_id, None)
        if method is None:  # abandoned: nobody waits any more
            return CallOutcome(event.call_id, error=None)
        output = event.output
        if isinstance(output, Ok):
            try:
                value = self.spec.decode_return(method, output.value)
            except Exception as exc:
                return CallOutcome(event.call_id, error=ClientDecodeError(f"{method}: {exc}"))
            return CallOutcome(event.call_id, value)
        kind = output.error
        if not isinstance(kind, RpcHandlerError):
            return CallOutcome(event.call_id, error=ClientDecodeError(f"bad error {kind!r}"))
        return CallOutcome(event.call_id, error=RpcError.for_kind(kind, f"{method}: {kind.name}"))
