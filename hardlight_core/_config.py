"""What the drivers need to know of a configuration, without addresses, files or sockets.

The configurations themselves (``ServerConfig``, ``ClientConfig``: host, port,
TLS, backlog) live with the adapters in ``hardlight_support``; the core reads
them through the :class:`ServerSettings` and :class:`ClientSettings` protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ._limits import Limits

__all__ = ["ClientSettings", "HandshakeInfo", "ReconnectPolicy", "Refuse", "ServerSettings"]


@dataclass(frozen=True)
class HandshakeInfo:
    """What a server-side hook sees of an upgrade request."""

    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    origin: str | None
    compression_level: int

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), decoded as latin-1."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None


class Refuse(Exception):
    """Raise from an ``authenticate`` hook to refuse a handshake (answered with ``status``)."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class ReconnectPolicy:
    """Exponential backoff between reconnection attempts (``max_attempts`` 0 = forever)."""

    initial_delay: float = 0.1
    max_delay: float = 10.0
    factor: float = 2.0
    max_attempts: int = 10

    def delays(self) -> Iterator[float]:
        """The delays to wait before each attempt: ``max_attempts`` of them, or without
        end when it is 0."""
        delay = self.initial_delay
        attempt = 0
        while self.max_attempts == 0 or attempt < self.max_attempts:
            attempt += 1
            yield delay
            delay = min(self.max_delay, delay * self.factor)


class ServerSettings(Protocol):
    """What :meth:`ServerCore.from_config` reads of a server configuration."""

    @property
    def limits(self) -> Limits | None: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def allowed_origins(self) -> frozenset[str] | None: ...
    @property
    def authenticate(self) -> Callable[[HandshakeInfo], Any] | None: ...


class ClientSettings(Protocol):
    """What the client driver reads of a client configuration."""

    @property
    def host_port(self) -> tuple[str, int]: ...
    @property
    def compression_level(self) -> int: ...
    @property
    def limits(self) -> Limits | None: ...
    @property
    def call_timeout(self) -> float | None: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def reconnect(self) -> ReconnectPolicy | None: ...
