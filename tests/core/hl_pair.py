"""A client and a server machine connected in memory (for bytes-in/events-out tests)."""

from __future__ import annotations

from typing import Any

from hardlight_core._connection import ClientConnection, ServerConnection
from hardlight_core._events import HandshakeRequested

KEY = b"\x01" * 16


def open_pair(level: int = 6, **server_kwargs: Any) -> tuple[ClientConnection, ServerConnection]:
    """A client and server that completed the upgrade."""
    client = ClientConnection("localhost:1", compression_level=level, random_bytes=lambda n: KEY)
    server = ServerConnection(**server_kwargs)
    server.receive_data(client.data_to_send(), 0.0)
    event = server.next_event()
    assert isinstance(event, HandshakeRequested)
    server.accept()
    client.receive_data(server.data_to_send(), 0.0)
    client.next_event()
    return client, server


def drain(machine: Any) -> list[Any]:
    """Every pending event."""
    return list(machine.events())
