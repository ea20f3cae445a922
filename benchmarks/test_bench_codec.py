"""rkyv codec vs msgspec msgpack on equivalent Structs.

Run: ``python -m pytest benchmarks --benchmark-enable``.
"""

from __future__ import annotations

import msgspec
import pytest

from hardlight_core import Variant, codec_for, u8, u32


class Point(msgspec.Struct):
    x: u32
    y: u32
    flag: bool
    kind: u8


class Incremented(Variant):
    to: u32
    from_: u32


class Decremented(Variant):
    to: u32
    from_: u32


class Task(msgspec.Struct):
    text: str
    done: bool


Event = Incremented | Decremented
STATE = {i: Task(f"task number {i} to do", i % 2 == 0) for i in range(10)}
POINT = Point(1, 2, True, 3)

CASES = {
    "struct": (Point, POINT),
    "enum": (Event, Decremented(4, 5)),
    "todo_state": (dict[u32, Task], STATE),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rkyv_roundtrip(benchmark: object, case: str) -> None:
    tp, value = CASES[case]
    codec = codec_for(tp)

    def run() -> object:
        return codec.decode(codec.encode(value))

    assert benchmark(run) == value  # type: ignore[operator]


class MIncremented(msgspec.Struct, tag=True):
    to: int
    from_: int


class MDecremented(msgspec.Struct, tag=True):
    to: int
    from_: int


# msgspec needs tagged Structs for a union; same shape otherwise.
MSGSPEC_CASES = dict(CASES, enum=(MIncremented | MDecremented, MDecremented(4, 5)))


@pytest.mark.parametrize("case", list(CASES))
def test_msgspec_msgpack_roundtrip(benchmark: object, case: str) -> None:
    tp, value = MSGSPEC_CASES[case]
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(tp)

    def run() -> object:
        return dec.decode(enc.encode(value))

    assert benchmark(run) == value  # type: ignore[operator]
