"""The HTTP/1.1 upgrade to ``hl/2`` WebSockets, on h11, with the reference's rules."""

from __future__ import annotations

import base64
import re
from http import HTTPStatus

import h11
from wsproto.utilities import generate_accept_token

__all__ = [
    "DEFAULT_LEVEL",
    "SUBPROTOCOL",
    "SUBPROTOCOLS",
    "chosen_subprotocol",
    "accept_token",
    "build_client_request",
    "check_upgrade_request",
    "header_value",
    "new_key",
    "parse_compression_level",
    "refusal_response",
    "switching_response",
]

SUBPROTOCOL = b"hl/2"
#: what a server accepts: the reference's name, and ``hl.2`` for browsers, whose
#: WebSocket API refuses a "/" in a subprotocol (RFC 6455 wants an HTTP token there)
SUBPROTOCOLS = (SUBPROTOCOL, b"hl.2")
DEFAULT_LEVEL = 6
_LEVEL = re.compile(rb"\+?[0-9]+")


def parse_compression_level(value: bytes | None) -> int:
    """``X-HL-Compress`` as the reference reads it: an integer 0..=9, else 6.

    Leading ``+`` and zeros are accepted (``+3`` is 3, ``07`` is 7); anything else
    (missing, empty, ``abc``, ``10``, ``-1``, ``256``) means 6.
    """
    if value is None:
        return DEFAULT_LEVEL
    value = value.strip(b" \t")
    if not _LEVEL.fullmatch(value):
        return DEFAULT_LEVEL
    level = int(value)
    return level if 0 <= level <= 9 else DEFAULT_LEVEL


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def new_key(random_bytes: bytes) -> bytes:
    """A ``Sec-WebSocket-Key`` from 16 random bytes."""
    return base64.b64encode(random_bytes)


def accept_token(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` answer to ``key``."""
    return generate_accept_token(key)


def build_client_request(host: str, key: bytes, level: int, path: str = "/") -> h11.Request:
    """The upgrade request exactly as the reference client sends it (headers in its order)."""
    return h11.Request(
        method="GET",
        target=path,
        headers=[
            ("Host", host),
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", key.decode("ascii")),
            ("x-hl-compress", str(level)),
            ("Sec-WebSocket-Protocol", "hl/2"),
        ],
    )


def check_upgrade_request(request: h11.Request) -> str | None:
    """Why ``request`` is not an acceptable ``hl/2`` upgrade, or None if it is."""
    headers = list(request.headers)
    if request.method != b"GET":
        return "method must be GET"
    connection = header_value(headers, b"connection") or b""
    if b"upgrade" not in [t.strip() for t in connection.lower().split(b",")]:
        return "not a WebSocket upgrade (Connection: Upgrade missing)"
    if (header_value(headers, b"upgrade") or b"").lower() != b"websocket":
        return "not a WebSocket upgrade (Upgrade: websocket missing)"
    if header_value(headers, b"sec-websocket-version") != b"13":
        return "Sec-WebSocket-Version must be 13"
    key = header_value(headers, b"sec-websocket-key")
    if key is None or len(base64.b64decode(key + b"==", validate=False)) < 16:
        return "Sec-WebSocket-Key missing or malformed"
    if chosen_subprotocol(headers) is None:
        protocol = header_value(headers, b"sec-websocket-protocol")
        shown = "none" if protocol is None else protocol.decode("latin-1")
        return f"subprotocol must be exactly hl/2 (or hl.2 from a browser), got {shown}"
    return None


def chosen_subprotocol(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The subprotocol asked for, if it is exactly one the server speaks (None if not:
    like the reference, a list such as ``hl/1, hl/2`` is refused)."""
    offered = header_value(headers, b"sec-websocket-protocol")
    return offered if offered in SUBPROTOCOLS else None


def switching_response(
    key: bytes, level: int, subprotocol: bytes = SUBPROTOCOL
) -> h11.InformationalResponse:
    """The 101 answer, with the headers the reference sends."""
    return h11.InformationalResponse(
        status_code=101,
        headers=[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-accept", accept_token(key).decode("ascii")),
            ("sec-websocket-protocol", subprotocol.decode("ascii")),
            ("x-hl-compress", str(level)),
        ],
        reason=b"Switching Protocols",
    )


def refusal_response(status: int, body: bytes) -> h11.Response:
    """A refusal (400, 403, ...) that tells the client why and closes."""
    return h11.Response(
        status_code=status,
        headers=[
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ],
        reason=_phrase(status),
    )


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Refused"
