"""Raw DEFLATE (RFC 1951) as HardLight uses it: one complete stream per message.

Inflation is bounded *while* inflating: a deflate bomb costs at most
``max_size`` bytes of memory before it is refused.
"""

from __future__ import annotations

import struct
import zlib

from ._errors import DecodeError, MessageTooLarge

__all__ = ["DEFAULT_MAX_INFLATED_SIZE", "InflateError", "deflate", "inflate"]

DEFAULT_MAX_INFLATED_SIZE = 16 * 1024 * 1024

_WBITS_RAW = -15
_STORED_HEADER = struct.Struct("<HH")
_STORED_BELOW = 32  # bytes: shorter messages only grow under compression


class InflateError(DecodeError):
    """The payload is not exactly one complete raw DEFLATE stream."""


def deflate(data: bytes, level: int) -> bytes:
    """Compress ``data`` as a fresh raw DEFLATE stream at ``level`` (0-9)."""
    if not 0 <= level <= 9:
        raise ValueError(f"compression level must be 0..9, got {level}")
    n = len(data)
    if n <= _STORED_BELOW:
        # deflate cannot shrink a message this small: one final stored block, no zlib
        return b"\x01" + _STORED_HEADER.pack(n, n ^ 0xFFFF) + data
    # A window no larger than the message compresses it exactly as well, and a full
    # 32 KiB window with its hash tables costs ~70 us to set up per message: more
    # than the rest of an RPC. Any window is valid raw DEFLATE for every inflater.
    wbits = min(15, max(9, len(data).bit_length()))
    compressor = zlib.compressobj(level, zlib.DEFLATED, -wbits, max(1, wbits - 7))
    return compressor.compress(data) + compressor.flush()


def inflate(data: bytes, max_size: int = DEFAULT_MAX_INFLATED_SIZE) -> bytes:
    """Inflate one raw DEFLATE stream, refusing output larger than ``max_size``.

    Raises :class:`InflateError` for corrupt, truncated or trailing data and
    :class:`~hardlight_core.MessageTooLarge` when the output would pass ``max_size``.
    """
    if data[:1] == b"\x01" and len(data) >= 5:
        # one final stored block (what small messages and level 0 produce): no zlib
        length, check = _STORED_HEADER.unpack_from(data, 1)
        if length ^ check == 0xFFFF and len(data) == 5 + length:
            if length > max_size:
                raise MessageTooLarge(
                    f"message inflates to more than {max_size} bytes", max_size
                )
            return data[5:]
    inflater = zlib.decompressobj(_WBITS_RAW)
    try:
        out = inflater.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise InflateError(f"corrupt deflate stream: {exc}") from None
    if len(out) > max_size or (inflater.unconsumed_tail and not inflater.eof):
        raise MessageTooLarge(f"message inflates to more than {max_size} bytes", max_size)
    if not inflater.eof:
        raise InflateError("truncated deflate stream (no final block)")
    if inflater.unused_data:
        raise InflateError(
            f"{len(inflater.unused_data)} bytes follow the end of the deflate stream"
        )
    return out
