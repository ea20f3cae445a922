"""Enums inside enums: each ArchivedOption / ArchivedResult / derived enum keeps
its own tag and layout (rkyv 0.7: a repr(u8) tag, then the variant's fields as
a repr(C) struct). Expected bytes were produced by the real rkyv 0.7.39 (see
conformance/.../oracle-regressions.json)."""

from __future__ import annotations

from typing import Optional

import msgspec
import pytest

from hardlight_core import DecodeError, EncodeError, codec_for, decode, encode
from hardlight_core._types import Box, Option, Some, u8, u16, u64


@pytest.mark.parametrize(
    ("value", "hexs"),
    [(None, "000000"), (Some(None), "010000"), (Some(Some(5)), "010105")],
)
def test_option_of_option_u8(value: object, hexs: str) -> None:
    tp = Option[Option[u8]]
    assert encode(value, tp).hex() == hexs
    assert decode(bytes.fromhex(hexs), tp) == value


def test_inner_option_is_aligned_as_a_whole() -> None:
    # outer tag, 7 padding, inner tag at 8, 7 padding, the u64 at 16
    hexs = "010000000000000001000000000000000700000000000000"
    assert encode(Some(Some(7)), Option[Option[u64]]).hex() == hexs
    assert codec_for(Option[Option[u64]]).size == 24


def test_option_and_optional_agree_on_bytes() -> None:
    assert encode(Some(7), Option[u64]) == encode(7, Optional[u64])  # noqa: UP045
    assert decode(encode(7, Optional[u64]), Option[u64]) == Some(7)  # noqa: UP045


def test_option_of_box_of_option() -> None:
    tp = Option[Box[Optional[u16]]]  # noqa: UP045
    assert encode(Some(9), tp).hex() == "0100090001000000f8ffffff"


@pytest.mark.parametrize("raw", ["0200", "0102", "01ff", "ff00"])
def test_bad_outer_or_inner_tag_is_rejected(raw: str) -> None:
    with pytest.raises(DecodeError, match="tag") as info:
        decode(bytes.fromhex(raw), Option[Option[None]])  # type: ignore[valid-type]
    assert info.value.__context__ is None


def test_wrong_size_is_rejected() -> None:
    # Option<Option<u8>> is 3 bytes; 2 bytes is Option<u8>'s size, not a prefix of it.
    with pytest.raises(DecodeError, match="too short"):
        decode(bytes.fromhex("0105"), Option[Option[u8]])


def test_ambiguous_optional_is_refused() -> None:
    with pytest.raises(TypeError, match="Option\\["):
        codec_for(Optional[Box[Option[u8]]])  # noqa: UP045
    with pytest.raises(TypeError, match="Some"):
        codec_for(Some[u8])


def test_option_values_must_be_some_or_none() -> None:
    with pytest.raises(EncodeError, match="Some"):
        encode(5, Option[u8])


class Link(msgspec.Struct):
    value: u8
    next: Option[Box[Link]]


def _chain(n: int) -> Link:
    link = Link(0, None)
    for i in range(1, n):
        link = Link(i % 256, Some(link))
    return link


def test_deep_nesting_is_a_decode_error_not_a_crash() -> None:
    assert decode(encode(_chain(90), Link), Link) == _chain(90)
    with pytest.raises(DecodeError, match="nested more than") as info:
        decode(encode(_chain(150), Link), Link)
    assert info.value.__context__ is None
