"""Every exception hardlight raises, rooted at :class:`HardLightError`.

Errors say whose fault they are: :class:`LocalProtocolError` is misuse by the
caller of this library, :class:`RemoteProtocolError` a peer that broke the
protocol. Codec failures are :class:`EncodeError` / :class:`DecodeError`. The
failure of one call is an :class:`RpcError` subclass named after the reference's
``RpcHandlerError`` variant, so ``except HandlerPanicked`` reads like Rust's match.
"""

from __future__ import annotations

import enum
from typing import Any, Generic, TypeVar

__all__ = [
    "AppError",
    "ServiceDefinitionError",
    "CallTimeout",
    "ClientCompressError",
    "ClientDecodeError",
    "ClientDecompressError",
    "ClientEncodeError",
    "ClientNotConnected",
    "CodecError",
    "ConnectError",
    "ConnectionRefused",
    "DecodeError",
    "EncodeError",
    "HandlerPanicked",
    "HardLightError",
    "LocalProtocolError",
    "MessageTooLarge",
    "PeerNotReading",
    "ProtocolError",
    "RemoteProtocolError",
    "RpcError",
    "RpcHandlerError",
    "ServerCompressError",
    "ServerDecodeError",
    "ServerDecompressError",
    "ServerEncodeError",
    "TooManyCallsInFlight",
]


class HardLightError(Exception):
    """Base class of every error raised by hardlight."""


class CodecError(HardLightError):
    """A value could not be archived, or bytes could not be read, as rkyv 0.7 does."""


class EncodeError(CodecError, ValueError):
    """A value does not fit its declared type (wrong kind, integer out of range, ...)."""


class DecodeError(CodecError, ValueError):
    """Bytes are not a valid archive of the expected type; says what and where."""


class ProtocolError(HardLightError):
    """A HardLight/WebSocket protocol rule was broken.

    ``close_code`` is the RFC 6455 close code the connection uses (or used) to
    end the connection because of it.
    """

    def __init__(self, msg: str, close_code: int = 1002) -> None:
        super().__init__(msg)
        self.close_code = close_code


class LocalProtocolError(ProtocolError):
    """You, the user of the library, asked for something illegal in this state."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something illegal; the connection is (being) closed."""


class MessageTooLarge(RemoteProtocolError):
    """A message, frame or inflated payload exceeded its configured limit."""

    def __init__(self, msg: str, limit: int) -> None:
        super().__init__(msg, close_code=1009)
        self.limit = limit


class PeerNotReading(HardLightError):
    """The peer stopped reading: more than ``Limits.max_outgoing_bytes`` queued for it.

    Neither side broke the protocol; the connection is closed with 1008 so that a slow
    reader never grows the server's memory.
    """

    close_code = 1008


class ConnectionRefused(HardLightError):
    """The server answered the upgrade with an error status (400 wrong subprotocol, 403, ...)."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"handshake refused: {status_code} {reason}".rstrip())
        self.status_code = status_code
        self.reason = reason


class RpcHandlerError(enum.Enum):
    """The reference's ``RpcHandlerError``: why a call failed (tag = position)."""

    ClientNotConnected = 0
    TooManyCallsInFlight = 1
    ClientEncodeError = 2
    ClientDecodeError = 3
    ServerEncodeError = 4
    ServerDecodeError = 5
    ClientCompressError = 6
    ClientDecompressError = 7
    ServerCompressError = 8
    ServerDecompressError = 9
    HandlerPanicked = 10


class RpcError(HardLightError):
    """A call failed; ``kind`` is the wire-level :class:`RpcHandlerError`."""

    kind: RpcHandlerError = RpcHandlerError.HandlerPanicked

    def __init__(self, msg: str | None = None) -> None:
        super().__init__(msg or self.kind.name)

    @staticmethod
    def for_kind(kind: RpcHandlerError, msg: str | None = None) -> RpcError:
        """The exception (an instance of the matching subclass) for a wire error."""
        return _BY_KIND[kind](msg)


class ClientNotConnected(RpcError):
    """The connection is not open (never was, or ended while the call was pending)."""

    kind = RpcHandlerError.ClientNotConnected


class TooManyCallsInFlight(RpcError):
    """All 256 call ids of the connection are in use; nothing was sent."""

    kind = RpcHandlerError.TooManyCallsInFlight


class ClientEncodeError(RpcError):
    """The client could not encode the call's arguments."""

    kind = RpcHandlerError.ClientEncodeError


class ClientDecodeError(RpcError):
    """The client could not decode the server's answer."""

    kind = RpcHandlerError.ClientDecodeError


class ServerEncodeError(RpcError):
    """The server could not encode the handler's return value."""

    kind = RpcHandlerError.ServerEncodeError


class ServerDecodeError(RpcError):
    """The server could not decode the call (unknown method tag, truncated arguments)."""

    kind = RpcHandlerError.ServerDecodeError


class ClientCompressError(RpcError):
    """The client could not compress the call."""

    kind = RpcHandlerError.ClientCompressError


class ClientDecompressError(RpcError):
    """The client could not inflate the answer."""

    kind = RpcHandlerError.ClientDecompressError


class ServerCompressError(RpcError):
    """The server could not compress the answer."""

    kind = RpcHandlerError.ServerCompressError


class ServerDecompressError(RpcError):
    """The server could not inflate the call."""

    kind = RpcHandlerError.ServerDecompressError


class HandlerPanicked(RpcError):
    """The server's handler raised (Rust: panicked) while serving the call."""

    kind = RpcHandlerError.HandlerPanicked


class CallTimeout(RpcError, TimeoutError):
    """No answer arrived within the call's timeout (the id stays reserved until one does).

    A :class:`TimeoutError` too: the call may still have run on the server, its result
    is unknown. The connection stays open.
    """

    kind = RpcHandlerError.ClientNotConnected


class ConnectError(HardLightError, OSError):
    """Connecting failed before the handshake: the address could not be reached, TCP or
    TLS failed, or the connect timeout passed. ``address`` is where, ``cause`` why
    (also ``__cause__``); an ``OSError`` too, so existing ``except OSError`` works."""

    def __init__(self, address: str, cause: BaseException | str) -> None:
        reason = cause if isinstance(cause, str) else (str(cause) or type(cause).__name__)
        HardLightError.__init__(self, f"could not connect to {address}: {reason}")
        self.address = address
        self.cause = cause
        self.errno = getattr(cause, "errno", None)


_BY_KIND: dict[RpcHandlerError, type[RpcError]] = {
    cls.kind: cls
    for cls in (
        ClientNotConnected,
        TooManyCallsInFlight,
        ClientEncodeError,
        ClientDecodeError,
        ServerEncodeError,
        ServerDecodeError,
        ClientCompressError,
        ClientDecompressError,
        ServerCompressError,
        ServerDecompressError,
        HandlerPanicked,
    )
}


class ServiceDefinitionError(HardLightError, TypeError):
    """A service or handler class is declared wrongly (raised when the class is defined,
    or at the latest when a server or client is built for it). The message names the
    class, the method and the parameter, and says what would fit."""


E = TypeVar("E")


class AppError(HardLightError, Generic[E]):
    """An application error: the ``Err`` side of a method declared ``-> Result[T, E]``.

    On the client, ``result.unwrap()`` (or :func:`~hardlight_core.unwrap`) raises it
    with ``error`` the decoded ``E`` value (an enum member, or a :class:`Variant`
    instance for an enum with data). In a handler, raising it from a method declared
    ``-> Result[T, E]`` answers ``Err(error)``, exactly as returning ``Err(error)`` does.
    The wire carries only the ``E`` value: no message, no traceback.
    """

    error: E

    def __init__(self, error: E) -> None:
        super().__init__(_describe_error(error))
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.error,))


def _describe_error(error: object) -> str:
    if isinstance(error, enum.Enum):
        return f"{type(error).__name__}.{error.name}"
    return repr(error)
