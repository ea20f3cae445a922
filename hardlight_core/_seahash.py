"""SeaHash (crate ``seahash`` 4.1), the streaming ``SeaHasher`` rkyv 0.7's hash index uses.

seahash 4.1's streaming hasher gives the same result however the input is split
into ``write`` calls, so hashing a value is hashing the concatenation of the
bytes Rust's ``Hash`` impls would feed it (see :func:`seahash`).
"""

from __future__ import annotations

import struct

__all__ = ["RKYV_SEEDS", "SeaHasher", "seahash"]

RKYV_SEEDS = (0x08576FB6170B5F5F, 0x587775EEB84A7E46, 0xAC701115428EE569, 0x910FEB91B92BB1CD)
"""The seeds rkyv 0.7's ``ArchivedHashIndex::make_hasher`` passes to ``SeaHasher::with_seeds``."""

_M = 0xFFFFFFFFFFFFFFFF
_P = 0x6EED0E9DA4D94A4F


def _diffuse(x: int) -> int:
    x = (x * _P) & _M
    x ^= (x >> 32) >> (x >> 60)
    return (x * _P) & _M


def seahash(data: bytes, seeds: tuple[int, int, int, int] = RKYV_SEEDS) -> int:
    """SeaHash of ``data`` with the given four 64-bit seeds (``SeaHasher::with_seeds``)."""
    a, b, c, d = seeds
    n = len(data)
    full = n & ~7
    p = _P
    m = _M
    if full:
        for (w,) in struct.iter_unpack("<Q", data[:full]):
            x = ((a ^ w) * p) & m
            x ^= (x >> 32) >> (x >> 60)
            a, b, c, d = b, c, d, (x * p) & m
    if n != full:
        tail = int.from_bytes(data[full:], "little")
        a = _diffuse(a ^ tail)
    return _diffuse(a ^ b ^ c ^ d ^ n)


class SeaHasher:
    """Streaming SeaHash: ``write`` bytes, then ``finish``; split points do not matter."""

    __slots__ = ("_parts", "_seeds")

    def __init__(self, seeds: tuple[int, int, int, int] = RKYV_SEEDS) -> None:
        self._seeds = seeds
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Feed bytes."""
        self._parts.append(bytes(data))

    def copy(self) -> SeaHasher:
        """A hasher in the same state (Rust's ``Clone``)."""
        h = SeaHasher(self._seeds)
        h._parts = list(self._parts)
        return h

    def finish(self) -> int:
        """The 64-bit hash of everything written so far."""
        return seahash(b"".join(self._parts), self._seeds)
