"""The rkyv codec: declarations, encode errors, decode validation."""

from __future__ import annotations

import enum
import math
import struct

import msgspec
import pytest

from hardlight_core._codec import codec_for, decode, encode
from hardlight_core._errors import DecodeError, EncodeError
from hardlight_core._types import (
    Array,
    Box,
    Err,
    Ok,
    Result,
    Variant,
    char,
    f32,
    i8,
    i128,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
)


class Small(msgspec.Struct):
    x: u8
    y: u16


class Task(msgspec.Struct, frozen=True):
    text: str
    done: bool


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"
    BLUE = "b"


class Incremented(Variant):
    to: u32
    from_: u32


class Named(Variant):
    name: str


class Nothing(Variant):
    pass


Event = Incremented | Named | Nothing


class Tree(msgspec.Struct):
    value: u32
    children: list[Tree]


def roundtrip(value: object, tp: object) -> object:
    return decode(encode(value, tp), tp)


def test_plain_int_is_refused() -> None:
    with pytest.raises(TypeError, match="u32"):
        codec_for(int)

    class Bad(msgspec.Struct):
        n: int

    with pytest.raises(TypeError):
        codec_for(Bad)


def test_codec_is_cached_and_reports_layout() -> None:
    c = codec_for(Small)
    assert codec_for(Small) is c
    assert (c.size, c.align) == (4, 2)
    assert c.encode(Small(1, 2)) == bytes.fromhex("02000100")
    assert c.decode(bytes.fromhex("02000100")) == Small(1, 2)


@pytest.mark.parametrize(
    ("tp", "value"),
    [(u8, 256), (u8, -1), (i8, 128), (u32, 2**32), (u64, -1), (u128, 2**128), (i128, 2**127),
     (usize, 2**32)],
)
def test_integer_out_of_range(tp: object, value: int) -> None:
    with pytest.raises(EncodeError, match=str(value)):
        encode(value, tp)


@pytest.mark.parametrize(
    ("tp", "value"),
    [(u32, "1"), (u32, 1.5), (bool, 1), (str, b"x"), (bytes, "x"), (char, "ab"), (Small, {}),
     (list[u8], 3), (Color, "r"), (Event, Small(1, 2)), (Array[u8, 2], (1, 2, 3)),
     (f32, "x"), (dict[u32, str], [])],
)
def test_wrong_kind(tp: object, value: object) -> None:
    with pytest.raises(EncodeError):
        encode(value, tp)


def test_struct_field_errors_name_the_field() -> None:
    with pytest.raises(EncodeError, match=r"Small\.y"):
        encode(Small(1, 70000), Small)


def test_values_roundtrip() -> None:
    cases: list[tuple[object, object]] = [
        (Small(3, 4), Small),
        ([Small(1, 2), Small(3, 4)], list[Small]),
        (Color.BLUE, Color),
        (Incremented(to=2, from_=1), Event),
        (Named("a long variant name"), Event),
        (Nothing(), Event),
        (Ok(5), Result[u32, str]),
        (Err("bad"), Result[u32, str]),
        (None, str | None),
        ("x" * 40, str | None),
        (7, Box[u64]),
        ((1, 2, 3), Array[u8, 3]),
        ((1, "two", True), tuple[u8, str, bool]),
        ({1: Task("a", False), 2: Task("bbbbbbbbbbbb", True)}, dict[u32, Task]),
        ({"k" * 9: [1, 2], "": []}, dict[str, list[u16]]),
        (Tree(1, [Tree(2, []), Tree(3, [Tree(4, [])])]), Tree),
        ("é€😀", str),
        ("😀", char),
        (2**127 - 1, i128),
        (None, None),
    ]
    for value, tp in cases:
        assert roundtrip(value, tp) == value, tp


def test_f32_keeps_nan_payload() -> None:
    raw = bytes.fromhex("7f0080ff")  # a signalling NaN
    v = decode(raw, f32)
    assert math.isnan(v)
    assert encode(v, f32) == raw


class Topic(msgspec.Struct):
    inner: bytes
    is_string: bool


class NewEvent(Variant):
    topic: Topic
    payload: bytes


def test_empty_bytes_point_at_current_position() -> None:
    data = encode(NewEvent(Topic(b"abc", True), b""), NewEvent)
    # As in messages.json (NewEvent there is tag 1 of ServerMessage; here a lone variant).
    assert data.hex() == "6162630000000000f8ffffff0300000001000000efffffff00000000"


# ---------------------------------------------------------------- validation


def test_root_too_short() -> None:
    with pytest.raises(DecodeError, match="too short"):
        decode(b"\x00", u32)


def test_root_unaligned() -> None:
    with pytest.raises(DecodeError, match="aligned"):
        decode(b"\x00" * 5, u32)


def test_bad_bool_and_char() -> None:
    with pytest.raises(DecodeError, match="bool at offset 0"):
        decode(b"\x02", bool)
    with pytest.raises(DecodeError, match="char"):
        decode(struct.pack("<I", 0xD800), char)
    with pytest.raises(DecodeError, match="char"):
        decode(struct.pack("<I", 0x110000), char)


def test_bad_tags() -> None:
    with pytest.raises(DecodeError, match="tag 3"):
        decode(b"\x03", Color)
    with pytest.raises(DecodeError, match="tag"):
        decode(b"\x02\x00", u8 | None)


def test_invalid_utf8() -> None:
    with pytest.raises(DecodeError, match="UTF-8"):
        decode(b"\xff\x00\x00\x00\x00\x00\x00\x01", str)


def test_inline_length_too_large() -> None:
    with pytest.raises(DecodeError, match="inline length"):
        decode(b"abcdefg\x08", str)


def test_pointer_out_of_bounds_and_huge_length() -> None:
    with pytest.raises(DecodeError, match="outside the buffer"):
        decode(struct.pack("<iI", 100, 1), bytes)
    with pytest.raises(DecodeError, match="overrun"):
        decode(struct.pack("<iI", 0, 0xFFFFFFFF), list[u64])


def test_claimed_twice() -> None:
    # Two strings pointing at the same out-of-line bytes.
    body = b"abcdefghij\x00\x00"
    a = struct.pack("<Ii", 10, -12)
    b = struct.pack("<Ii", 10, -20)
    with pytest.raises(DecodeError, match="claimed"):
        decode(body + a + b, tuple[str, str])


def test_map_with_entry_in_wrong_slot() -> None:
    data = bytearray(encode({1: "one", 2: "two", 3: "three"}, dict[u32, str]))
    data[0:4] = struct.pack("<I", 0x80000000)  # another seed for bucket 0
    with pytest.raises(DecodeError):
        decode(bytes(data), dict[u32, str])


def test_zero_sized_vector_cap() -> None:
    with pytest.raises(DecodeError, match="zero-sized"):
        decode(struct.pack("<iI", 0, 0xFFFFFFFF), list[None])  # type: ignore[valid-type]
