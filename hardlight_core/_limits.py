"""Every size and time bound a connection enforces, with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass

from ._deflate import DEFAULT_MAX_INFLATED_SIZE

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds for one connection. All sizes in bytes, all times in seconds.

    - ``max_message_size``: a WebSocket message (compressed HardLight payload), 1 MiB;
      a frame header announcing more closes the connection with 1009 at once.
    - ``max_inflated_size``: what one message may inflate to, 16 MiB (checked while inflating).
    - ``max_handshake_size``: the HTTP upgrade request or response head, 16 KiB.
    - ``max_outgoing_bytes``: bytes queued for a peer that does not read, 8 MiB; past it the
      connection is closed with 1008 (policy: close, never drop an RPC response silently).
    - ``handshake_timeout``: time to complete the upgrade, 10 s.
    - ``idle_timeout``: with nothing received for this long a ping is sent; with nothing
      for twice as long the connection is closed (1011 is not used: it is dropped).
    - ``close_timeout``: time the peer has to answer our close frame, 5 s.
    - ``max_pending_handshakes``: sockets a server holds that have not finished their
      upgrade, 1,000; one more is closed at once (a flood of idle sockets cannot hold the
      server's memory and file descriptors for the whole handshake timeout).
    """

    max_message_size: int = 1024 * 1024
    max_inflated_size: int = DEFAULT_MAX_INFLATED_SIZE
    max_handshake_size: int = 16 * 1024
    max_outgoing_bytes: int = 8 * 1024 * 1024
    handshake_timeout: float = 10.0
    idle_timeout: float = 60.0
    close_timeout: float = 5.0
    max_pending_handshakes: int = 1000
