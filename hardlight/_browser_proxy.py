"""A relay that lets browsers reach servers that only accept the subprotocol ``hl/2``.

Browsers cannot offer ``hl/2``: a WebSocket subprotocol must be an RFC 2616 token and
``/`` is a separator, so ``new WebSocket(url, "hl/2")`` throws. The browser client
(``clients/js``) offers ``hl.2`` instead. This relay accepts a connection, rewrites the
one ``Sec-WebSocket-Protocol`` header of the upgrade request (``hl.2`` -> ``hl/2``) and
of the answer (``hl/2`` -> ``hl.2``), and then copies bytes both ways untouched: every
HardLight message after the handshake is exactly what the server sent or expects.

It is what a browser needs in front of the Rust reference server (or any server that
does not accept ``hl.2``); ``python -m hardlight browser-proxy`` runs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

__all__ = ["BROWSER_PROTOCOL", "PROTOCOL", "start_browser_proxy", "swap_protocol"]

PROTOCOL = b"hl/2"
BROWSER_PROTOCOL = b"hl.2"
MAX_HEAD = 16 * 1024


def swap_protocol(head: bytes, old: bytes, new: bytes) -> bytes:
    """An HTTP head with a ``Sec-WebSocket-Protocol: old`` header changed to ``new``."""
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines):
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"sec-websocket-protocol" and value.strip() == old:
            lines[i] = name + b": " + new
    return b"\r\n".join(lines)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


async def start_browser_proxy(
    upstream_host: str,
    upstream_port: int,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    upstream_ssl: ssl.SSLContext | None = None,
) -> asyncio.Server:
    """Listen on ``host:port`` (TLS with ``ssl_context``) and relay to the upstream server
    (over TLS with ``upstream_ssl``), mapping the subprotocol ``hl.2`` to ``hl/2``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers = [writer]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            up_reader, up_writer = await asyncio.open_connection(
                upstream_host,
                upstream_port,
                ssl=upstream_ssl,
                server_hostname=upstream_host if upstream_ssl is not None else None,
                limit=MAX_HEAD,
            )
            writers.append(up_writer)
            up_writer.write(swap_protocol(head, BROWSER_PROTOCOL, PROTOCOL))
            answer = await up_reader.readuntil(b"\r\n\r\n")
            writer.write(swap_protocol(answer, PROTOCOL, BROWSER_PROTOCOL))
            copies = [
                asyncio.ensure_future(_copy(reader, up_writer)),
                asyncio.ensure_future(_copy(up_reader, writer)),
            ]
            _done, pending = await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            for w in writers:
                w.close()

    return await asyncio.start_server(handle, host, port, ssl=ssl_context, limit=MAX_HEAD)
