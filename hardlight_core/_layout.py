"""Sizes, alignments, niches and field offsets of archived types (rkyv 0.7, size_32).

Archived structs derived by rkyv 0.7 carry no ``#[repr(C)]``, so rustc orders
their fields; :func:`struct_layout` reproduces rustc's ``univariant`` /
``univariant_biased`` (``compiler/rustc_abi/src/layout.rs``) for what archived
types can contain. Tuples, enum variants, ``ArchivedOption`` and
``ArchivedResult`` are laid out in declaration order (:func:`c_layout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BOOL",
    "CHAR",
    "Niche",
    "Shape",
    "align_up",
    "array_shape",
    "c_layout",
    "enum_layout",
    "scalar",
    "struct_layout",
    "tag_size",
    "tuple_layout",
]


@dataclass(frozen=True, slots=True)
class Niche:
    """Invalid bit patterns rustc may use: ``available`` values of a ``size``-byte
    scalar at ``offset``."""

    available: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Shape:
    """Size, alignment and largest niche of an archived type."""

    size: int
    align: int
    niche: Niche | None = None


def align_up(n: int, a: int) -> int:
    """``n`` rounded up to a multiple of ``a`` (a power of two)."""
    return (n + a - 1) & -a


def scalar(size: int) -> Shape:
    """A niche-less scalar aligned to its size (integers, floats, relative pointers)."""
    return Shape(size, size)


BOOL = Shape(1, 1, Niche(254, 0, 1))
"""``bool``: values 2..=255 are invalid."""
CHAR = Shape(4, 4, Niche(2**32 - 0x110000, 0, 4))
"""``char``: a u32 up to 0x10FFFF."""


def tag_size(n_variants: int) -> int:
    """Bytes of the tag rkyv_derive picks for an enum of ``n_variants``."""
    return 1 if n_variants <= 255 else 2


def _avail(s: Shape) -> int:
    return s.niche.available if s.niche is not None else 0


def _place(fields: Sequence[Shape], order: Sequence[int], start: int, end_bias: bool
           ) -> tuple[list[int], int, int, Niche | None]:
    offsets = [0] * len(fields)
    off = start
    align = 1
    niche: Niche | None = None
    best = 0
    for i in order:
        f = fields[i]
        off = align_up(off, f.align)
        align = max(align, f.align)
        offsets[i] = off
        if f.niche is not None:
            av = f.niche.available
            if av > best or (end_bias and av == best):
                best = av
                niche = Niche(av, f.niche.offset + off, f.niche.size)
        off += f.size
    return offsets, align_up(off, align), align, niche


def c_layout(fields: Sequence[Shape], start: int = 0, min_align: int = 1
             ) -> tuple[list[int], Shape]:
    """Declaration-order (``repr(C)``) layout: offsets and the resulting shape."""
    offsets, _, align, niche = _place(fields, range(len(fields)), start, False)
    align = max(align, min_align)
    end = start
    for f, o in zip(fields, offsets, strict=True):
        end = max(end, o + f.size)
    return offsets, Shape(align_up(end, align), align, niche)


def _biased(fields: Sequence[Shape], end_bias: bool, maybe_unsized: bool = False
            ) -> tuple[list[int], Shape]:
    n = len(fields)
    order = list(range(n))
    # A tuple's last field might be unsized, so rustc keeps it last and leaves
    # it out of the reordering and of the statistics that drive it.
    m = n - 1 if maybe_unsized else n
    if n > 1 and m > 0:
        max_align = max(f.align for f in fields[:m])
        largest = max(_avail(f) for f in fields[:m])
        log_max = max_align.bit_length() - 1

        def group(f: Shape) -> int:
            g = (max(f.align, f.size) & -max(f.align, f.size)).bit_length() - 1
            if largest > 0:
                if not end_bias:
                    return min(log_max, g)
                if _avail(f) == largest:
                    return f.align.bit_length() - 1
            return g

        def key(i: int) -> tuple[int, int, int]:
            f = fields[i]
            av = _avail(f)
            if end_bias:
                # rustc: niche size ascending, then !(size - niche offset).
                inner = 0 if f.niche is None else -(f.size - f.niche.offset) - 1
                return (-group(f), av, inner)
            return (-group(f), -av, 0 if f.niche is None else f.niche.offset)

        head = order[:m]
        head.sort(key=key)
        order = head + order[m:]
    offsets, size, align, niche = _place(fields, order, 0, end_bias)
    return offsets, Shape(size, align, niche)


def struct_layout(fields: Sequence[Shape]) -> tuple[list[int], Shape]:
    """rustc's default layout of a struct: field offsets (declaration order) and shape."""
    offsets, shape = _biased(fields, False)
    niche = shape.niche
    if niche is not None and len(fields) > 1:
        head = niche.offset
        tail = shape.size - head - niche.size
        if head != 0 and tail > 0:
            alt_offsets, alt = _biased(fields, True)
            assert alt.niche is not None
            if alt.niche.offset > head and alt.niche.offset > tail:
                return alt_offsets, alt
    return offsets, shape


def tuple_layout(fields: Sequence[Shape]) -> tuple[list[int], Shape]:
    """rustc's layout of a native tuple (``StructKind::MaybeUnsized``): the last
    field stays last, the others are ordered as in a struct, and no end bias."""
    return _biased(fields, False, maybe_unsized=True)


def enum_layout(n_variants: int, variants: Sequence[Sequence[Shape]]
                ) -> tuple[int, list[list[int]], Shape]:
    """A ``#[repr(u8/u16)]`` enum: tag size, per-variant field offsets, and shape."""
    ts = tag_size(n_variants)
    size = ts
    align = ts
    all_offsets: list[list[int]] = []
    for fields in variants:
        offsets, vs = c_layout(fields, ts, ts)
        all_offsets.append(offsets)
        size = max(size, vs.size)
        align = max(align, vs.align)
    niche = Niche((1 << (8 * ts)) - n_variants, 0, ts) if n_variants < (1 << (8 * ts)) else None
    return ts, all_offsets, Shape(align_up(size, align), align, niche)


def array_shape(elem: Shape, n: int) -> Shape:
    """``[T; n]``: the element's niche (first element) when non-empty."""
    return Shape(elem.size * n, elem.align, elem.niche if n > 0 else None)
