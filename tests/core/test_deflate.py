"""Raw deflate: round trips, and inflation refused past its ceiling while inflating."""

from __future__ import annotations

import contextlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardlight_core import DecodeError, InflateError, MessageTooLarge, deflate, inflate


@given(st.binary(max_size=4096), st.integers(0, 9))
def test_round_trip(data: bytes, level: int) -> None:
    assert inflate(deflate(data, level)) == data


@given(st.binary(max_size=256))
def test_garbage_only_raises_decode_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError, MessageTooLarge):
        inflate(data, max_size=1024)


def test_bomb_is_refused_at_the_ceiling() -> None:
    bomb = deflate(b"\0" * (8 * 1024 * 1024), 9)
    assert len(bomb) < 16 * 1024
    with pytest.raises(MessageTooLarge) as info:
        inflate(bomb, max_size=1024 * 1024)
    assert info.value.close_code == 1009
    assert inflate(bomb, max_size=8 * 1024 * 1024) == b"\0" * (8 * 1024 * 1024)


def test_exactly_at_the_ceiling_is_accepted() -> None:
    assert inflate(deflate(b"a" * 100, 6), max_size=100) == b"a" * 100
    with pytest.raises(MessageTooLarge):
        inflate(deflate(b"a" * 101, 6), max_size=100)


def test_truncated_and_trailing_streams_are_refused() -> None:
    stream = deflate(b"hello world" * 10, 6)
    with pytest.raises(InflateError, match="truncated"):
        inflate(stream[:-2])
    with pytest.raises(InflateError, match="follow"):
        inflate(stream + stream)  # two streams in one message: the reference answers neither
    with pytest.raises(InflateError):
        inflate(b"")


def test_zlib_wrapped_payload_is_refused() -> None:
    with pytest.raises(InflateError):
        inflate(zlib.compress(b"hello"))


def test_level_is_checked() -> None:
    with pytest.raises(ValueError):
        deflate(b"", 10)


def test_small_messages_are_one_stored_block_read_without_zlib() -> None:
    small = b"\x03\0\0\0\0\0\0\0"
    packed = deflate(small, 9)
    assert packed[:1] == b"\x01" and zlib.decompress(packed, -15) == small
    assert inflate(packed) == small
    with pytest.raises(MessageTooLarge):
        inflate(packed, max_size=4)
    with pytest.raises(InflateError):
        inflate(packed + b"\0")  # trailing bytes fall through to zlib, which refuses them
