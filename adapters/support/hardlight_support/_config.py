"""Server and client configuration (addresses, TLS, timeouts), shared by every adapter.

TLS is on unless plain TCP is asked for by name (``ServerConfig.plaintext`` /
``ClientConfig(..., plaintext=True)``), for use behind a TLS-terminating proxy.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hardlight_core import HandshakeInfo, Limits, ReconnectPolicy

from ._tls import ClientTLS, ServerTLS

__all__ = ["ClientConfig", "ServerConfig", "check_reuse_port"]

DEFAULT_COMPRESSION_LEVEL = 6

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110)
_PATH = re.compile(r"/[\x21-\x7e]*")  # an origin-form request target: no spaces, no controls
#: headers of the upgrade that the client writes itself
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "sec-websocket-version",
        "sec-websocket-key",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "x-hl-compress",
        "content-length",
        "transfer-encoding",
    }
)


def _check_headers(
    headers: Mapping[str, str] | tuple[tuple[str, str], ...],
) -> tuple[tuple[str, str], ...]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs: list[tuple[str, str]] = []
    for pair in items:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ValueError(f"ClientConfig headers: (name, value) pairs, not {pair!r}")
        name, value = pair
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"ClientConfig headers: {name!r} is not a header name")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"ClientConfig headers: {name} is set by the client itself")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"ClientConfig headers: the value of {name} has CR, LF or NUL")
        if value != value.strip(" \t"):
            raise ValueError(f"ClientConfig headers: the value of {name} has outer whitespace")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"ClientConfig headers: the value of {name} is not latin-1") from None
        pairs.append((name, value))
    return tuple(pairs)


def check_reuse_port() -> None:
    """Raise ValueError, saying why, where the OS has no ``SO_REUSEPORT``."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError(
            "reuse_port=True: this operating system has no SO_REUSEPORT, so several "
            "processes cannot listen on one port (run one server process, or several "
            "on different ports behind a load balancer)"
        )


def _split_address(address: str, default_port: int) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return address, default_port
    return host, int(port)


@dataclass(frozen=True)
class ServerConfig:
    """Where and how a server listens.

    ``authenticate(info)`` runs on every upgrade request: raise :class:`Refuse` to
    answer it with an error status; what it returns is handed to the connection's
    handler as ``handler.auth``. ``allowed_origins`` (when set) refuses browsers
    from other origins with 403.

    ``reuse_port`` sets ``SO_REUSEPORT`` on the listening sockets, so several processes
    (the workers of ``run_workers``) can listen on one port; on Linux the kernel spreads
    new connections over them. It is refused here, with a clear error, where the OS has
    no ``SO_REUSEPORT`` (Windows).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    tls: ServerTLS | None = None
    plaintext: bool = False
    max_connections: int = 10_000
    allowed_origins: frozenset[str] | None = None
    authenticate: Callable[[HandshakeInfo], Any] | None = None
    shutdown_grace: float = 5.0
    limits: Limits | None = None  # None: the defaults
    backlog: int = 1024
    reuse_port: bool = False

    def __post_init__(self) -> None:
        if self.reuse_port:
            check_reuse_port()
        if self.tls is None and not self.plaintext:
            raise ValueError(
                "ServerConfig needs tls= (ServerTLS.from_files / ServerConfig.self_signed) "
                "or an explicit plaintext=True for use behind a TLS-terminating proxy"
            )

    @classmethod
    def self_signed(cls, address: str = "localhost:8080", **kwargs: Any) -> ServerConfig:
        """Listen on ``address`` with a fresh self-signed certificate.

        Its fingerprint is ``config.tls.fingerprint`` (and :attr:`fingerprint`): give it
        to clients (``ClientTLS.pinned(fp)``).
        """
        host, port = _split_address(address, 8080)
        tls = ServerTLS.self_signed(host, "127.0.0.1")
        bind = "127.0.0.1" if host == "localhost" else host
        return cls(host=bind, port=port, tls=tls, **kwargs)

    @classmethod
    def from_files(cls, address: str, cert_file: str, key_file: str, **kwargs: Any) -> ServerConfig:
        """Listen on ``address`` with a certificate chain and key from PEM files."""
        host, port = _split_address(address, 8080)
        return cls(host=host, port=port, tls=ServerTLS.from_files(cert_file, key_file), **kwargs)

    @classmethod
    def plain(cls, address: str, **kwargs: Any) -> ServerConfig:
        """Plain TCP, no TLS: only behind a TLS-terminating proxy."""
        host, port = _split_address(address, 8080)
        return cls(host=host, port=port, plaintext=True, **kwargs)

    @property
    def fingerprint(self) -> str | None:
        """SHA-256 fingerprint of the server certificate (None without TLS)."""
        return self.tls.fingerprint if self.tls is not None else None


@dataclass(frozen=True)
class ClientConfig:
    """Where a client connects and how it checks the server.

    ``address`` is ``host:port`` (``wss://host:port`` is accepted too). TLS
    verification follows ``tls`` (system trust store by default).

    ``path`` is the upgrade request's target (``/`` like the reference; a query string
    may follow) and ``headers`` extra upgrade headers (a mapping or (name, value) pairs,
    e.g. ``{"Authorization": "Bearer ..."}``); the server's ``authenticate`` hook sees
    both in its ``HandshakeInfo``, and a handler as ``self.handshake``.
    """

    address: str = "localhost:8080"
    tls: ClientTLS = field(default_factory=ClientTLS)
    plaintext: bool = False
    compression_level: int = DEFAULT_COMPRESSION_LEVEL
    call_timeout: float | None = 30.0
    connect_timeout: float = 10.0
    reconnect: ReconnectPolicy | None = None
    limits: Limits | None = None  # None: the defaults
    headers: Mapping[str, str] | tuple[tuple[str, str], ...] = ()
    path: str = "/"

    def __post_init__(self) -> None:
        if not 0 <= self.compression_level <= 9:
            raise ValueError(f"compression_level must be 0..9, got {self.compression_level}")
        self.host_port  # noqa: B018 - refuse an address without a port now, not at connect
        # kept as pairs (hashable, ordered); CR/LF and the client's own headers refused now
        object.__setattr__(self, "headers", _check_headers(self.headers))
        if not isinstance(self.path, str) or not _PATH.fullmatch(self.path):
            raise ValueError(
                f"ClientConfig path {self.path!r}: start with '/', no spaces or control "
                "characters (percent-encode them)"
            )

    @property
    def upgrade_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """``headers`` as the bytes the upgrade request carries."""
        pairs = self.headers.items() if isinstance(self.headers, Mapping) else self.headers
        return tuple((name.encode("ascii"), value.encode("latin-1")) for name, value in pairs)


    @property
    def host_port(self) -> tuple[str, int]:
        """(host, port) to connect to."""
        address = self.address
        for scheme in ("wss://", "ws://"):
            if address.startswith(scheme):
                address = address[len(scheme) :]
        address = address.rstrip("/")
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"ClientConfig address {self.address!r} needs a port: write host:port "
                "(e.g. 'localhost:8443' or 'wss://example.com:443')"
            )
        return host.strip("[]"), int(port)

    @property
    def server_hostname(self) -> str:
        """Name checked against the certificate (and sent as SNI)."""
        return self.tls.server_hostname or self.host_port[0]

    @classmethod
    def pinned(cls, address: str, fingerprint: str, **kwargs: Any) -> ClientConfig:
        """Connect to a self-signed server, trusting only that certificate fingerprint."""
        return cls(address=address, tls=ClientTLS.pinned(fingerprint), **kwargs)
