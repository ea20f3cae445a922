"""rkyv 0.7's compress-hash-displace index (``collections/hash_index``).

Keys are given as the bytes Rust's ``Hash`` would feed SeaHash for them (see
``_codec``); the index only ever hashes those bytes, optionally prefixed with a
4-byte displacement seed.
"""

from __future__ import annotations

import struct

from ._seahash import seahash

__all__ = ["EMPTY", "SEED_BASE", "build_index", "lookup"]

EMPTY = 0xFFFFFFFF
"""Displacement of an empty bucket."""
SEED_BASE = 0x80000000
"""Displacements at or above this are seeds; below it they are slots."""

_U32 = struct.Struct("<I")


def build_index(keys: list[bytes]) -> tuple[list[int], list[int]]:
    """Build the index for distinct keys (their hash feeds).

    Returns ``(displace, order)``: the displacement array and, for each slot, the
    position in ``keys`` of the key stored there.
    """
    n = len(keys)
    if n == 0:
        return [], []
    buckets: list[list[int]] = [[] for _ in range(n)]
    for i, k in enumerate(keys):
        buckets[seahash(k) % n].append(i)
    # Largest buckets first, then by bucket number (rkyv's stable sort by
    # (Reverse(size), bucket)); keys within a bucket keep their order.
    by_size = sorted((b for b in range(n) if buckets[b]), key=lambda b: (-len(buckets[b]), b))
    occupied = [False] * n
    slots: list[int] = [-1] * n
    displace = [EMPTY] * n
    first_empty = 0
    for b in by_size:
        members = buckets[b]
        if len(members) > 1:
            seed = SEED_BASE
            while True:
                prefix = _U32.pack(seed)
                assigned: list[int] = []
                for i in members:
                    s = seahash(prefix + keys[i]) % n
                    if occupied[s] or s in assigned:
                        break
                    assigned.append(s)
                else:
                    break
                seed += 1
                if seed > 0xFFFFFFFF:  # pragma: no cover - rkyv would panic too
                    raise ValueError("no displacement seed fits this bucket")
            for i, s in zip(members, assigned, strict=True):
                occupied[s] = True
                slots[s] = i
            displace[b] = seed
        else:
            while occupied[first_empty]:
                first_empty += 1
            occupied[first_empty] = True
            slots[first_empty] = members[0]
            displace[b] = first_empty
            first_empty += 1
    return displace, slots


def lookup(displace: list[int] | tuple[int, ...], key: bytes) -> int | None:
    """The slot of ``key`` as rkyv's ``ArchivedHashIndex::index`` computes it, or None."""
    n = len(displace)
    if n == 0:
        return None
    d = displace[seahash(key) % n]
    if d == EMPTY:
        return None
    if d < SEED_BASE:
        return d
    return seahash(_U32.pack(d) + key) % n
