"""RFC 6455 frames: a lean reader and writer for HardLight's hot path.

wsproto's frame protocol was the first implementation; measured here it cost
about 25 us to read and 10 us to write one small message, more than everything
else a call does, and it cannot refuse an oversized frame before buffering it.
This module keeps its rules (RSV bits, opcodes, control-frame limits, masking by
role, continuation order, close codes, UTF-8 of text and close reasons) and its
error codes, and reports the announced length as soon as a header is read.
"""

from __future__ import annotations

import codecs
import os
import struct
from collections.abc import Callable

from ._errors import MessageTooLarge, RemoteProtocolError
from ._frame import Frame, Opcode

__all__ = [
    "Frame",
    "FrameReader",
    "MaskKeySource",
    "Opcode",
    "close_payload",
    "frame_bytes",
    "mask_payload",
]

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


_DATA = (Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY)
_KNOWN = frozenset(int(o) for o in Opcode)
# Opcode(n) through the enum machinery costs more than the rest of a header
_OPCODE_OF: tuple[Opcode | None, ...] = tuple(Opcode(n) if n in _KNOWN else None for n in range(16))
# close codes a peer may send (RFC 6455 7.4.1 and the IANA registry; 3000-4999 for apps)
_SENDABLE = frozenset(range(1000, 1012)) - {1004, 1005, 1006} | {1012, 1013, 1014}


def mask_payload(payload: bytes | bytearray, key: bytes | bytearray) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` (masking and unmasking are the same)."""
    n = len(payload)
    if not n:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little"
    )


class MaskKeySource:
    """Masking keys drawn from ``random_bytes`` 512 bytes at a time.

    Each key is still fresh, unpredictable randomness (RFC 6455 5.3); drawing in bulk
    spares a getrandom() system call per message.
    """

    __slots__ = ("_at", "_draw", "_pool")

    def __init__(self, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._draw = random_bytes
        self._pool = b""
        self._at = 0

    def __call__(self, n: int) -> bytes:
        """The next ``n`` random bytes."""
        at = self._at
        if at + n > len(self._pool):
            self._pool = self._draw(max(512, n))
            at = 0
        self._at = at + n
        return self._pool[at : at + n]


def frame_bytes(
    opcode: int, payload: bytes, *, mask: bool, random_bytes: Callable[[int], bytes] = os.urandom
) -> bytes:
    """One final frame carrying ``payload`` (masked with a fresh key when ``mask``)."""
    n = len(payload)
    first = 0x80 | opcode
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = bytes((first, mask_bit | 126)) + _U16.pack(n)
    else:
        head = bytes((first, mask_bit | 127)) + _U64.pack(n)
    if mask:
        key = random_bytes(4)
        return head + key + mask_payload(payload, key)
    return head + payload


def close_payload(code: int | None, reason: str = "") -> bytes:
    """The body of a close frame (empty when ``code`` is None)."""
    if code is None:
        return b""
    return _U16.pack(code) + reason.encode()[:123]


class FrameReader:
    """Reads frames from a byte stream for one role, enforcing RFC 6455 and a size limit.

    ``expect_masked`` is True on the server (client frames must be masked) and False
    on the client. Errors raise :class:`RemoteProtocolError` with the close code to
    use (1002, or 1007 for bad UTF-8) or :class:`MessageTooLarge` (1009).
    """

    __slots__ = (
        "_buffer",
        "_fragments",
        "_fragments_size",
        "_message_opcode",
        "_text_decoder",
        "expect_masked",
        "max_message_size",
    )

    def __init__(self, *, expect_masked: bool, max_message_size: int) -> None:
        self.expect_masked = expect_masked
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._message_opcode: Opcode | None = None
        self._text_decoder: codecs.IncrementalDecoder | None = None

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; returns every complete message and control frame now readable."""
        buffer = self._buffer
        source: bytes | bytearray
        if buffer:
            buffer += data
            source = buffer
        else:
            source = data  # the usual case: parse the read itself, no copy into the buffer
        frames: list[Frame] = []
        pos = 0
        end = len(source)
        limit = self.max_message_size
        try:
            while end - pos >= 2:
                b0 = source[pos]
                b1 = source[pos + 1]
                n = b1 & 0x7F
                at = pos + 2
                if n == 126:
                    if end - at < 2:
                        break
                    n = _U16.unpack_from(source, at)[0]
                    at += 2
                elif n == 127:
                    if end - at < 8:
                        break
                    n = _U64.unpack_from(source, at)[0]
                    at += 8
                self._check_header(b0, b1, n, limit)
                masked = b1 & 0x80
                if masked:
                    if end - at < 4:
                        break
                    key = source[at : at + 4]
                    at += 4
                if end - at < n:
                    break
                if masked:
                    payload = mask_payload(source[at : at + n], key)
                else:
                    payload = bytes(source[at : at + n])
                pos = at + n
                opcode = _OPCODE_OF[b0 & 0x0F]
                if b0 == 0x82 and self._message_opcode is None:
                    frames.append(Frame(Opcode.BINARY, payload))  # a whole binary message
                    continue
                assert opcode is not None  # _check_header refused unknown opcodes
                frame = self._complete(b0 & 0x80, opcode, payload)
                if frame is not None:
                    frames.append(frame)
                    if frame.opcode is Opcode.CLOSE:
                        break  # nothing after a close frame is read
        finally:
            if source is buffer:
                del buffer[:pos]
            elif pos < end:
                buffer += data[pos:]
        return frames

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame or message."""
        return len(self._buffer) + self._fragments_size

    def _check_header(self, b0: int, b1: int, length: int, limit: int) -> None:
        if b0 & 0x70:
            raise RemoteProtocolError("reserved bits set (no extension was negotiated)", 1002)
        opcode = b0 & 0x0F
        if opcode not in _KNOWN:
            raise RemoteProtocolError(f"reserved opcode {opcode:#x}", 1002)
        if bool(b1 & 0x80) != self.expect_masked:
            raise RemoteProtocolError(
                "client frames must be masked"
                if self.expect_masked
                else "server frames must not be masked",
                1002,
            )
        if opcode >= 0x8:
            if not b0 & 0x80:
                raise RemoteProtocolError("fragmented control frame", 1002)
            if length > 125:
                raise RemoteProtocolError("control frame longer than 125 bytes", 1002)
        elif length + self._fragments_size > limit:
            raise MessageTooLarge(
                f"message of at least {length + self._fragments_size} bytes (limit {limit})",
                limit,
            )

    def _complete(self, fin: int, opcode: Opcode, payload: bytes) -> Frame | None:
        if opcode >= 0x8:
            return self._control(opcode, payload)
        if opcode is Opcode.CONTINUATION:
            if self._message_opcode is None:
                raise RemoteProtocolError("continuation frame without a message", 1002)
        elif self._message_opcode is not None:
            raise RemoteProtocolError("new message before the last one finished", 1002)
        else:
            self._message_opcode = opcode
            if opcode is Opcode.TEXT:
                self._text_decoder = codecs.getincrementaldecoder("utf-8")()
        if self._text_decoder is not None:
            try:
                self._text_decoder.decode(payload, final=bool(fin))
            except UnicodeDecodeError:
                raise RemoteProtocolError("text message is not valid UTF-8", 1007) from None
        if not fin:
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            return None
        message_opcode = self._message_opcode
        assert message_opcode is not None
        if self._fragments:
            self._fragments.append(payload)
            payload = b"".join(self._fragments)
            self._fragments.clear()
            self._fragments_size = 0
        self._message_opcode = None
        self._text_decoder = None
        return Frame(message_opcode, payload)

    def _control(self, opcode: Opcode, payload: bytes) -> Frame:
        if opcode is not Opcode.CLOSE:
            return Frame(opcode, payload)
        if not payload:
            return Frame(opcode, payload, None, "")
        if len(payload) == 1:
            raise RemoteProtocolError("close frame with a 1-byte body", 1002)
        code = _U16.unpack_from(payload)[0]
        if code not in _SENDABLE and not 3000 <= code <= 4999:
            raise RemoteProtocolError(f"invalid close code {code}", 1002)
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError:
            raise RemoteProtocolError("close reason is not valid UTF-8", 1007) from None
        return Frame(opcode, payload, code, reason)
