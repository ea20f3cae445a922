"""rustc field ordering for archived structs and tuples (RKYV.md examples)."""

from __future__ import annotations

from hardlight_core._layout import (
    BOOL,
    CHAR,
    Niche,
    Shape,
    enum_layout,
    scalar,
    struct_layout,
    tuple_layout,
)

U8, U16, U32, U64 = scalar(1), scalar(2), scalar(4), scalar(8)
VEC = STRING = Shape(8, 4)


def test_awk_is_b_d_a_c() -> None:
    offsets, shape = struct_layout([U8, U64, U8, U32])
    assert offsets == [12, 0, 13, 8]
    assert (shape.size, shape.align) == (16, 8)


def test_state_update_puts_vec_first() -> None:
    offsets, shape = struct_layout([U32, VEC])  # index: usize, data: Vec<u8>
    assert offsets == [8, 0]
    assert shape.size == 12


def test_flags_char_then_bools() -> None:
    offsets, shape = struct_layout([BOOL, U8, BOOL, CHAR, scalar(1)])
    assert offsets == [4, 6, 5, 0, 7]
    assert shape.niche == Niche(2**32 - 0x110000, 0, 4)


def test_small_struct() -> None:
    assert struct_layout([U8, U16])[0] == [2, 0]


def test_end_bias_moves_niche_to_the_end() -> None:
    # (u16 group) bool ... : a struct whose start-biased niche sits mid-way.
    offsets, shape = struct_layout([U16, BOOL, Shape(3, 1)])
    assert shape.niche is not None
    start = shape.niche.offset
    assert start == offsets[1]


def test_tuple_keeps_last_field_last() -> None:
    assert tuple_layout([U8, U32, STRING])[0] == [4, 0, 8]
    assert tuple_layout([STRING, BOOL, U16])[0] == [0, 8, 10]


def test_enum_tag_widths() -> None:
    assert enum_layout(255, [[]] * 255)[2].size == 1
    assert enum_layout(256, [[]] * 256)[2].size == 2
    ts, offsets, shape = enum_layout(3, [[U8], [U8, U64], []])
    assert ts == 1 and offsets[1] == [1, 8] and shape.size == 16 and shape.align == 8
    assert shape.niche == Niche(253, 0, 1)


def test_option_in_option_keeps_the_inner_enum_whole() -> None:
    # ArchivedOption<u64>: tag, padding, payload at 8 -> 16 bytes, align 8, a tag niche
    _, inner_offsets, inner = enum_layout(2, [[], [U64]])
    assert inner_offsets == [[], [8]] and (inner.size, inner.align) == (16, 8)
    # ArchivedOption<ArchivedOption<u64>>: the inner option sits at 8 as a 16-byte unit
    _, offsets, outer = enum_layout(2, [[], [inner]])
    assert offsets == [[], [8]] and (outer.size, outer.align) == (24, 8)
    assert outer.niche == Niche(254, 0, 1)
