"""Property tests: random types round-trip; hostile bytes only raise DecodeError.

"Only DecodeError" means a DecodeError raised by one of the decoder's checks:
the codec has no catch-all, so any other exception (IndexError, struct.error,
...) escapes as itself and fails these tests, and a DecodeError must not carry
another exception as its cause or context.
"""

from __future__ import annotations

import enum
import itertools
import math
import struct
import typing
from typing import Any, Optional

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardlight_core import _types as T
from hardlight_core._codec import codec_for
from hardlight_core._errors import DecodeError

_names = itertools.count()

_INTS: list[tuple[Any, int, int]] = [
    (T.u8, 0, 2**8 - 1), (T.u16, 0, 2**16 - 1), (T.u32, 0, 2**32 - 1), (T.u64, 0, 2**64 - 1),
    (T.u128, 0, 2**128 - 1), (T.i8, -(2**7), 2**7 - 1), (T.i16, -(2**15), 2**15 - 1),
    (T.i32, -(2**31), 2**31 - 1), (T.i64, -(2**63), 2**63 - 1), (T.usize, 0, 2**32 - 1),
]

# A "type" here is (hint, strategy of values, hashable?).
Ty = tuple[Any, st.SearchStrategy[Any], bool]


def _f32s() -> st.SearchStrategy[float]:
    return st.floats(width=32, allow_nan=False)


def _scalars() -> st.SearchStrategy[Ty]:
    ints = [st.just((tp, st.integers(lo, hi), True)) for tp, lo, hi in _INTS]
    return st.one_of(
        *ints,
        st.just((bool, st.booleans(), True)),
        st.just((T.char, st.characters(exclude_categories=("Cs",)), True)),
        st.just((str, st.text(max_size=20), True)),
        st.just((bytes, st.binary(max_size=20), True)),
        st.just((T.f32, _f32s(), False)),
        st.just((T.f64, st.floats(allow_nan=False), False)),
    )


def _unit_enum(n: int) -> Ty:
    cls = enum.Enum(f"E{next(_names)}", [f"V{i}" for i in range(n)])  # type: ignore[misc]
    return cls, st.sampled_from(list(cls)), False


def _extend(children: st.SearchStrategy[Ty]) -> st.SearchStrategy[Ty]:
    def vec(c: Ty) -> Ty:
        return list[c[0]], st.lists(c[1], max_size=4), False  # type: ignore[name-defined]

    def option(c: Ty) -> Ty:
        return Optional[c[0]], st.none() | c[1], False  # noqa: UP045

    def some_option(c: Ty) -> Ty:
        # Option[T] nests: Option[Option[T]], options of enums and structs, ...
        return T.Option[c[0]], st.none() | st.builds(T.Some, c[1]), False  # type: ignore[misc]

    def box(c: Ty) -> Ty:
        return T.Box[c[0]], c[1], c[2]  # type: ignore[misc]

    def array(c: Ty, n: int) -> Ty:
        return T.Array[c[0], n], st.tuples(*[c[1]] * n), c[2]

    def tup(cs: list[Ty]) -> Ty:
        hint = tuple.__class_getitem__(tuple(c[0] for c in cs))
        return hint, st.tuples(*[c[1] for c in cs]), all(c[2] for c in cs)

    def result(a: Ty, b: Ty) -> Ty:
        hint = T.Result[a[0], b[0]]  # type: ignore[misc]
        return hint, st.builds(T.Ok, a[1]) | st.builds(T.Err, b[1]), False

    def mapping(k: Ty, v: Ty) -> Ty:
        return dict.__class_getitem__((k[0], v[0])), st.dictionaries(k[1], v[1], max_size=5), False

    def struct_(cs: list[Ty]) -> Ty:
        cls = msgspec.defstruct(f"S{next(_names)}", [(f"f{i}", c[0]) for i, c in enumerate(cs)])
        return cls, st.builds(cls, *[c[1] for c in cs]), False

    def variants(vs: list[list[Ty]]) -> Ty:
        classes = [
            msgspec.defstruct(f"V{next(_names)}", [(f"f{i}", c[0]) for i, c in enumerate(cs)],
                              bases=(T.Variant,), frozen=True)
            for cs in vs
        ]
        hint: Any = classes[0]
        for c in classes[1:]:
            hint = hint | c
        strat = st.one_of(*[st.builds(c, *[x[1] for x in cs])
                            for c, cs in zip(classes, vs, strict=True)])
        return hint, strat, False

    plain = children.filter(lambda c: not _nullable(c[0]))
    hashable = children.filter(lambda c: c[2] and c[0] not in (T.f32, T.f64))
    return st.one_of(
        children.map(vec),
        plain.map(option),
        children.map(some_option),
        children.map(box),
        st.tuples(children, st.integers(0, 3)).map(lambda a: array(*a)),
        st.lists(children, min_size=1, max_size=4).map(tup),
        st.tuples(children, children).map(lambda a: result(*a)),
        st.tuples(hashable, children).map(lambda a: mapping(*a)),
        st.lists(children, max_size=5).map(struct_),
        st.lists(st.lists(children, max_size=3), min_size=1, max_size=4).map(variants),
        st.integers(1, 300).map(_unit_enum),
    )


def _nullable(hint: Any) -> bool:
    """None is a value of ``hint`` (unit, any option, a box of those)."""
    if hint is None:
        return True
    if typing.get_origin(hint) is typing.Annotated:
        return _nullable(typing.get_args(hint)[0])
    return type(None) in getattr(hint, "__args__", ())


def _rkyv_reads_back(hint: Any) -> bool:
    """Whether rkyv 0.7.39 can validate its own archives of ``hint`` (see
    oracle-regressions.json): not a tuple with out-of-line data in two elements,
    nor a map keyed by usize/isize (its index is built from 8-byte hashes and
    validated with 4-byte ones)."""
    if typing.get_origin(hint) is typing.Annotated:
        base, *meta = typing.get_args(hint)
        if any(isinstance(m, T.Int) and m.name in ("usize", "isize") for m in meta):
            return True
        return _rkyv_reads_back(base)
    args = tuple(a for a in typing.get_args(hint) if a is not Ellipsis)
    if typing.get_origin(hint) is tuple and sum(_has_deps(a) for a in args) > 1:
        return False
    if typing.get_origin(hint) is dict and _has_word(args[0]):
        return False
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return all(_rkyv_reads_back(h) for h in typing.get_type_hints(
            hint, include_extras=True).values())
    return all(_rkyv_reads_back(a) for a in args)


def _has_deps(hint: Any) -> bool:
    return codec_for(hint)._node.has_deps


def _has_word(hint: Any) -> bool:
    return "usize" in repr(hint) or "isize" in repr(hint)


types_ = st.recursive(_scalars(), _extend, max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_roundtrip(data: st.DataObject) -> None:
    hint, values, _ = data.draw(types_)
    codec = codec_for(hint)
    value = data.draw(values)
    raw = codec.encode(value)
    if not _rkyv_reads_back(hint):
        # rkyv cannot read these back either; we reject them the same way.
        _decode_only_raises_decode_error(hint, raw)
        return
    back = codec.decode(raw)
    assert _same(back, value)
    assert codec.encode(back) == raw


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float):
        return isinstance(b, (float, int)) and (a == b or (math.isnan(a) and math.isnan(b)))
    if isinstance(a, msgspec.Struct):
        return type(a) is type(b) and _same(msgspec.structs.astuple(a), msgspec.structs.astuple(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _decode_only_raises_decode_error(hint: Any, raw: bytes) -> None:
    try:
        codec_for(hint).decode(raw)
    except DecodeError as e:
        # Raised deliberately by a check, not converted from another exception.
        assert e.__cause__ is None, f"DecodeError caused by {e.__cause__!r}"
        assert e.__context__ is None, f"DecodeError raised while handling {e.__context__!r}"
        assert str(e), "a DecodeError says what is wrong"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutated_bytes_only_raise_decode_error(data: st.DataObject) -> None:
    hint, values, _ = data.draw(types_)
    raw = bytearray(codec_for(hint).encode(data.draw(values)))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["set", "cut", "grow", "i32"]))
        if op == "set" and raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        elif op == "cut" and raw:
            del raw[: data.draw(st.integers(1, len(raw)))]
        elif op == "grow":
            raw[0:0] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "i32" and len(raw) >= 4:
            at = data.draw(st.integers(0, len(raw) - 4))
            raw[at:at + 4] = struct.pack("<i", data.draw(st.integers(-(2**31), 2**31 - 1)))
    _decode_only_raises_decode_error(hint, bytes(raw))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_bytes_only_raise_decode_error(data: st.DataObject) -> None:
    hint, _, _ = data.draw(types_)
    _decode_only_raises_decode_error(hint, data.draw(st.binary(max_size=64)))
