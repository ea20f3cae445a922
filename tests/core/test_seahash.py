"""SeaHash as rkyv 0.7's hash index uses it."""

from __future__ import annotations

import struct

from hardlight_core._hashindex import EMPTY, build_index, lookup
from hardlight_core._seahash import SeaHasher, seahash


def test_streaming_split_points_do_not_matter() -> None:
    data = bytes(range(77))
    whole = seahash(data)
    for cut in (0, 1, 7, 8, 9, 31, 32, 33, 76):
        h = SeaHasher()
        h.write(data[:cut])
        h.write(data[cut:])
        assert h.finish() == whole


def test_distinct_lengths_distinct_hashes() -> None:
    assert len({seahash(b"\x00" * n) for n in range(40)}) == 40


def test_map_three_displacements() -> None:
    # The public vector map_three: keys 1, 2, 3 -> displace [0x80000002, EMPTY, 1].
    keys = [struct.pack("<I", k) for k in (1, 2, 3)]
    displace, order = build_index(keys)
    assert displace == [0x80000002, EMPTY, 1]
    assert order == [1, 2, 0]
    for slot, i in enumerate(order):
        assert lookup(displace, keys[i]) == slot


def test_index_independent_of_insertion_order() -> None:
    keys = [struct.pack("<I", k) for k in range(50)]
    d1, o1 = build_index(keys)
    rev = keys[::-1]
    d2, o2 = build_index(rev)
    assert d1 == d2
    assert [keys[i] for i in o1] == [rev[i] for i in o2]


def test_lookup_empty() -> None:
    assert lookup([], b"x") is None
