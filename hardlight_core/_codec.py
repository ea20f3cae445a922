"""A byte-exact rkyv 0.7 codec (size_32, little-endian) driven by Python type hints.

:func:`codec_for` compiles a type (see ``_types``) once into a tree of nodes
that know the archived layout (``_layout``); :func:`encode` / :func:`decode`
use the cached codec. Encoding follows ``rkyv::to_bytes``: out-of-line data is
appended depth-first in field order before the object that points at it, and
the root ends the buffer. Decoding follows ``rkyv::from_bytes`` with bytecheck:
every pointer is bounds- and alignment-checked and must land inside the
current *subtree range*, which emulates rkyv's ``ArchiveValidator``: checking an
out-of-line object narrows the range to the bytes before it while its children
are checked, then moves the range's start past it, so no byte range can be
claimed twice and data must appear in the order rkyv writes it.
"""

from __future__ import annotations

import contextlib
import enum
import operator
import struct
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Final, TypeVar

import msgspec

from ._errors import DecodeError, EncodeError
from ._hashindex import SEED_BASE, build_index, lookup
from ._layout import (
    BOOL,
    CHAR,
    Shape,
    array_shape,
    c_layout,
    enum_layout,
    scalar,
    struct_layout,
    tuple_layout,
)
from ._types import ArrayLen, BoxMarker, CharMarker, Err, Float, Int, Ok, Some, Variant

__all__ = ["Codec", "codec_for", "decode", "encode"]

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_PTR_LEN = struct.Struct("<iI")  # ArchivedVec: offset, len
_LEN_OFF = struct.Struct("<Ii")  # out-of-line ArchivedString: len, offset
_U64 = struct.Struct("<Q")

# A vector of zero-sized elements costs no bytes; cap it so hostile input cannot
# make us build a list of four billion items.
MAX_ZST_ELEMENTS: Final = 1 << 20
# Pointers followed inside one another (Box, Vec and HashMap of out-of-line
# data). rkyv has no limit; ours keeps a recursive type's decoding well inside
# Python's recursion limit, so hostile nesting is a DecodeError, not a crash.
MAX_DEPTH: Final = 100

_Writer = bytearray


def _pad(w: _Writer, align: int) -> None:
    pad = -len(w) & (align - 1)
    if pad:
        w += bytes(pad)


def _kind(v: Any) -> str:
    return type(v).__name__


class _Dec:
    """Decoding state: the buffer and rkyv's current subtree range ``[lo, hi)``."""

    __slots__ = ("data", "depth", "hi", "lo", "n")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)
        self.lo = 0
        self.hi = self.n
        self.depth = 0

    def enter(self, what: str, pos: int) -> None:
        """One pointer deeper; refuses nesting beyond :data:`MAX_DEPTH`."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise DecodeError(
                f"{what} at offset {pos}: out-of-line data nested more than {MAX_DEPTH} deep"
            )

    def ptr(self, base: int, off: int, size: int, align: int, what: str) -> int:
        """Check a relative pointer at ``base`` to ``size`` bytes; returns the target."""
        t = base + off
        n = self.n
        if t < 0 or t > n:
            raise DecodeError(
                f"{what}: relative pointer at offset {base} targets {t}, outside the buffer "
                f"(length {n})"
            )
        if t & (align - 1):
            raise DecodeError(
                f"{what}: relative pointer at offset {base} targets {t}, not aligned to {align}"
            )
        if n - t < size:
            raise DecodeError(
                f"{what}: {size} bytes at offset {t} (pointer at {base}) overrun the buffer "
                f"(length {n})"
            )
        lo, hi = self.lo, self.hi
        if size == 0:
            if t < lo or t > hi:
                raise DecodeError(
                    f"{what}: pointer at offset {base} targets {t}, outside the unclaimed "
                    f"range {lo}..{hi}"
                )
        elif t < lo or t >= hi or hi - t < size:
            raise DecodeError(
                f"{what}: {size} bytes at offset {t} (pointer at {base}) are outside the "
                f"unclaimed range {lo}..{hi} (claimed twice or out of order)"
            )
        return t


class _Node:
    """A compiled archived type."""

    __slots__ = (
        "align",
        "dec_conv",
        "enc_conv",
        "finished",
        "fmt",
        "has_deps",
        "hashable",
        "name",
        "nullable",
        "shape",
        "size",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.finished = False
        self.has_deps = False
        self.hashable = False
        # None is one of its values (unit, options, boxes of those): such a
        # type cannot sit inside the flattening Optional[T].
        self.nullable = False
        # For scalars usable in one precompiled struct.Struct: format char and
        # conversions (None = identity).
        self.fmt: str | None = None
        self.enc_conv: Callable[[Any], Any] | None = None
        self.dec_conv: Callable[[Any, int], Any] | None = None

    def set_shape(self, shape: Shape) -> None:
        self.shape = shape
        self.size = shape.size
        self.align = shape.align
        self.finished = True

    def deps(self, v: Any, w: _Writer) -> Any:
        """Write out-of-line data of ``v``; returns the resolver ``obj`` needs."""
        return None

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        """The archived object (``size`` bytes) of ``v`` placed at ``pos``."""
        raise NotImplementedError

    def dec(self, d: _Dec, pos: int) -> Any:
        """Validate and read the archived object at ``pos`` (already bounds-checked)."""
        raise NotImplementedError

    def feed(self, v: Any, archived: bool = False) -> bytes:
        """The bytes Rust's ``Hash`` feeds a hasher for this value (map keys).

        rkyv builds a map's hash index from the *unarchived* keys and validates it
        by hashing the *archived* keys (``archived=True``); the two differ only
        where the archived type differs (``usize`` hashes 8 bytes, its archived
        ``u32`` 4).
        """
        raise TypeError(f"{self.name} cannot be a HashMap key")


# ---------------------------------------------------------------- scalars


class _IntNode(_Node):
    __slots__ = ("hash_width", "hi", "lo", "st")

    _FMT: Final = {(8, False): "B", (8, True): "b", (16, False): "H", (16, True): "h",
                   (32, False): "I", (32, True): "i", (64, False): "Q", (64, True): "q"}

    def __init__(self, m: Int) -> None:
        super().__init__(m.name)
        self.lo = -(1 << (m.bits - 1)) if m.signed else 0
        self.hi = (1 << (m.bits - 1)) - 1 if m.signed else (1 << m.bits) - 1
        fmt = self._FMT.get((m.bits, m.signed))
        self.fmt = fmt
        self.st = struct.Struct("<" + fmt) if fmt else None
        self.hashable = True
        # Rust hashes usize/isize as 8 bytes even though size_32 archives 4.
        self.hash_width = 8 if m.name in ("usize", "isize") else m.bits // 8
        self.set_shape(scalar(m.bits // 8))

    def check(self, v: Any) -> int:
        if not isinstance(v, int):
            raise EncodeError(f"{self.name}: expected an int, got {_kind(v)} {v!r}")
        if not self.lo <= v <= self.hi:
            raise EncodeError(f"{self.name}: {v} is out of range {self.lo}..={self.hi}")
        return v

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        if self.st is not None:
            try:
                return self.st.pack(v)
            except (struct.error, TypeError, OverflowError):
                self.check(v)
                raise
        return self.check(v).to_bytes(self.size, "little", signed=self.lo < 0)

    def dec(self, d: _Dec, pos: int) -> Any:
        if self.st is not None:
            return self.st.unpack_from(d.data, pos)[0]
        return int.from_bytes(d.data[pos:pos + self.size], "little", signed=self.lo < 0)

    def feed(self, v: Any, archived: bool = False) -> bytes:
        width = self.size if archived else self.hash_width
        return int(v).to_bytes(width, "little", signed=self.lo < 0)


_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


def _f32_bits(v: Any) -> int:
    """IEEE bits of ``v`` as f32, keeping NaN payloads (struct's cast would quiet them)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EncodeError(f"f32: expected a float, got {_kind(v)} {v!r}")
    if v != v:
        (b,) = _U64.unpack(_F64.pack(v))
        return ((b >> 32) & 0x80000000) | 0x7F800000 | ((b >> 29) & 0x7FFFFF) or 0x7FC00000
    try:
        return int(_U32.unpack(_F32.pack(v))[0])
    except OverflowError:
        raise EncodeError(f"f32: {v!r} is out of range") from None


def _f32_from_bits(b: int, pos: int) -> float:
    if (b & 0x7F800000) == 0x7F800000 and b & 0x7FFFFF:
        bits = ((b & 0x80000000) << 32) | 0x7FF0000000000000 | ((b & 0x7FFFFF) << 29)
        return float(_F64.unpack(_U64.pack(bits))[0])
    return float(_F32.unpack(_U32.pack(b))[0])


class _FloatNode(_Node):
    __slots__ = ("st",)

    def __init__(self, m: Float) -> None:
        super().__init__(m.name)
        if m.bits == 32:
            # As bits, so signalling NaNs survive a decode/encode round trip.
            self.fmt = "I"
            self.enc_conv = _f32_bits
            self.dec_conv = _f32_from_bits
        else:
            self.fmt = "d"
        self.st = struct.Struct("<" + self.fmt)
        self.set_shape(scalar(m.bits // 8))

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        if self.enc_conv is not None:
            return self.st.pack(self.enc_conv(v))
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise EncodeError(f"{self.name}: expected a float, got {_kind(v)} {v!r}")
        return self.st.pack(v)

    def dec(self, d: _Dec, pos: int) -> Any:
        (x,) = self.st.unpack_from(d.data, pos)
        if self.dec_conv is not None:
            return self.dec_conv(x, pos)
        return x


def _bool_enc(v: Any) -> int:
    if v is True:
        return 1
    if v is False:
        return 0
    raise EncodeError(f"bool: expected a bool, got {_kind(v)} {v!r}")


def _bool_dec(b: int, pos: int) -> bool:
    if b == 0:
        return False
    if b == 1:
        return True
    raise DecodeError(f"bool at offset {pos} is {b:#04x}, not 0 or 1")


class _BoolNode(_Node):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("bool")
        self.fmt = "B"
        self.enc_conv = _bool_enc
        self.dec_conv = _bool_dec
        self.hashable = True
        self.set_shape(BOOL)

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        if v is True:
            return b"\x01"
        if v is False:
            return b"\x00"
        return bytes([_bool_enc(v)])

    def dec(self, d: _Dec, pos: int) -> Any:
        return _bool_dec(d.data[pos], pos)

    def feed(self, v: Any, archived: bool = False) -> bytes:
        return b"\x01" if v else b"\x00"


def _char_enc(v: Any) -> int:
    if not isinstance(v, str) or len(v) != 1:
        raise EncodeError(f"char: expected a one-character str, got {_kind(v)} {v!r}")
    c = ord(v)
    if 0xD800 <= c <= 0xDFFF:
        raise EncodeError(f"char: {v!r} is a surrogate, not a Unicode scalar value")
    return c


def _char_dec(c: int, pos: int) -> str:
    if c > 0x10FFFF or 0xD800 <= c <= 0xDFFF:
        raise DecodeError(f"char at offset {pos} is {c:#x}, not a Unicode scalar value")
    return chr(c)


class _CharNode(_Node):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("char")
        self.fmt = "I"
        self.enc_conv = _char_enc
        self.dec_conv = _char_dec
        self.hashable = True
        self.set_shape(CHAR)

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        return _U32.pack(_char_enc(v))

    def dec(self, d: _Dec, pos: int) -> Any:
        return _char_dec(_U32.unpack_from(d.data, pos)[0], pos)

    def feed(self, v: Any, archived: bool = False) -> bytes:
        return _U32.pack(ord(v))


class _UnitNode(_Node):
    __slots__ = ()

    def __init__(self, name: str = "()") -> None:
        super().__init__(name)
        self.hashable = True
        self.nullable = True
        self.set_shape(Shape(0, 1))

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        if v is not None and v != ():
            raise EncodeError(f"(): expected None, got {_kind(v)} {v!r}")
        return b""

    def dec(self, d: _Dec, pos: int) -> Any:
        return None

    def feed(self, v: Any, archived: bool = False) -> bytes:
        return b""


# ---------------------------------------------------------------- strings, vectors, boxes


def _utf8(v: Any) -> bytes:
    if not isinstance(v, str):
        raise EncodeError(f"String: expected a str, got {_kind(v)} {v!r}")
    try:
        return v.encode("utf-8")
    except UnicodeEncodeError as e:
        raise EncodeError(f"String: {v!r} is not valid Unicode ({e.reason})") from None


class _StrNode(_Node):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("String")
        self.has_deps = True
        self.hashable = True
        self.set_shape(Shape(8, 4))

    def deps(self, v: Any, w: _Writer) -> Any:
        b = _utf8(v)
        if len(b) <= 7:
            return b
        pos = len(w)
        w += b
        return (pos, len(b))

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        if type(r) is bytes:
            return r + bytes(7 - len(r)) + _U8.pack(len(r))
        return _LEN_OFF.pack(r[1], r[0] - pos)

    def dec(self, d: _Dec, pos: int) -> Any:
        data = d.data
        b7 = data[pos + 7]
        if not b7 & 0x80:
            if b7 > 7:
                raise DecodeError(f"String at offset {pos}: inline length {b7} exceeds 7")
            raw = data[pos:pos + b7]
        else:
            ln, off = _LEN_OFF.unpack_from(data, pos)
            t = d.ptr(pos, off, ln, 1, "String")
            raw = data[t:t + ln]
            d.lo = t + ln
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            reason = f"{e.reason} at byte {e.start}"
        # Raised outside the handler: a DecodeError never carries another exception.
        raise DecodeError(f"String at offset {pos}: invalid UTF-8 ({reason})")

    def feed(self, v: Any, archived: bool = False) -> bytes:
        return _utf8(v) + b"\xff"


class _BytesNode(_Node):
    """``Vec<u8>`` as Python ``bytes``."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("Vec<u8>")
        self.has_deps = True
        self.hashable = True
        self.set_shape(Shape(8, 4))

    def deps(self, v: Any, w: _Writer) -> Any:
        if not isinstance(v, (bytes, bytearray, memoryview)):
            raise EncodeError(f"Vec<u8>: expected bytes, got {_kind(v)} {v!r}")
        pos = len(w)
        w += v
        return (pos, len(w) - pos)

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        return _PTR_LEN.pack(r[0] - pos, r[1])

    def dec(self, d: _Dec, pos: int) -> Any:
        off, ln = _PTR_LEN.unpack_from(d.data, pos)
        t = d.ptr(pos, off, ln, 1, "Vec<u8>")
        d.lo = t + ln
        return d.data[t:t + ln]

    def feed(self, v: Any, archived: bool = False) -> bytes:
        return _U64.pack(len(v)) + bytes(v)


def _hash_items(node: _Node, v: Any, archived: bool) -> bytes:
    # Hash for [T] / Vec<T> / [T; N]: length as usize, then the elements.
    return _U64.pack(len(v)) + b"".join(node.feed(x, archived) for x in v)


class _VecNode(_Node):
    __slots__ = ("elem",)

    def __init__(self, elem: _Node) -> None:
        super().__init__(f"Vec<{elem.name}>")
        self.elem = elem
        self.has_deps = True
        self.hashable = elem.hashable
        self.set_shape(Shape(8, 4))

    def deps(self, v: Any, w: _Writer) -> Any:
        if not isinstance(v, (list, tuple)):
            raise EncodeError(f"{self.name}: expected a list, got {_kind(v)}")
        e = self.elem
        n = len(v)
        if e.fmt is not None:
            _pad(w, e.align)
            pos = len(w)
            vals = v if e.enc_conv is None else [e.enc_conv(x) for x in v]
            try:
                w += struct.pack(f"<{n}{e.fmt}", *vals)
            except (struct.error, TypeError, OverflowError):
                for x in v:
                    e.obj(x, None, 0)
                raise
            return (pos, n)
        if e.has_deps:
            rs = [e.deps(x, w) for x in v]
            _pad(w, e.align)
            pos = len(w)
            eobj = e.obj
            for x, r in zip(v, rs, strict=True):
                w += eobj(x, r, len(w))
            return (pos, n)
        _pad(w, e.align)
        pos = len(w)
        eobj = e.obj
        w += b"".join([eobj(x, None, 0) for x in v])
        return (pos, n)

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        return _PTR_LEN.pack(r[0] - pos, r[1])

    def dec(self, d: _Dec, pos: int) -> Any:
        e = self.elem
        off, ln = _PTR_LEN.unpack_from(d.data, pos)
        esize = e.size
        if esize == 0 and ln > MAX_ZST_ELEMENTS:
            raise DecodeError(
                f"{self.name} at offset {pos}: {ln} zero-sized elements exceed the limit "
                f"{MAX_ZST_ELEMENTS}"
            )
        size = ln * esize
        t = d.ptr(pos, off, size, e.align, self.name)
        if e.fmt is not None:
            vals = list(struct.unpack_from(f"<{ln}{e.fmt}", d.data, t))
            dc = e.dec_conv
            if dc is not None:
                vals = [dc(x, t + i * esize) for i, x in enumerate(vals)]
            d.lo = t + size
            return vals
        if e.has_deps:
            saved = d.hi
            d.hi = t
            d.enter(self.name, pos)
            edec = e.dec
            out = [edec(d, t + i * esize) for i in range(ln)]
            d.depth -= 1
            d.lo = t + size
            d.hi = saved
            return out
        edec = e.dec
        out = [edec(d, t + i * esize) for i in range(ln)]
        d.lo = t + size
        return out

    def feed(self, v: Any, archived: bool = False) -> bytes:
        return _hash_items(self.elem, v, archived)


class _BoxNode(_Node):
    __slots__ = ("inner",)

    def __init__(self, inner: _Node) -> None:
        super().__init__(f"Box<{inner.name}>")
        self.inner = inner
        self.has_deps = True
        self.hashable = inner.hashable
        self.nullable = inner.nullable
        self.set_shape(Shape(4, 4))

    def deps(self, v: Any, w: _Writer) -> Any:
        i = self.inner
        r = i.deps(v, w) if i.has_deps else None
        _pad(w, i.align)
        pos = len(w)
        w += i.obj(v, r, pos)
        return pos

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        return _I32.pack(r - pos)

    def dec(self, d: _Dec, pos: int) -> Any:
        i = self.inner
        (off,) = _I32.unpack_from(d.data, pos)
        t = d.ptr(pos, off, i.size, i.align, self.name)
        saved = d.hi
        d.hi = t
        d.enter(self.name, pos)
        v = i.dec(d, t)
        d.depth -= 1
        d.lo = t + i.size
        d.hi = saved
        return v

    def feed(self, v: Any, archived: bool = False) -> bytes:
        return self.inner.feed(v, archived)


# ---------------------------------------------------------------- aggregates


class _Fields:
    """Fields at fixed offsets inside an object, written/checked in declaration order."""

    __slots__ = ("deps_idx", "mem", "nodes", "offsets", "reverse")

    def __init__(self, nodes: list[_Node], offsets: list[int], reverse: bool = False) -> None:
        self.nodes = nodes
        self.offsets = offsets
        # rkyv 0.7 serializes tuple elements last to first (its impl_tuple macro
        # lists them in reverse), but bytecheck 0.6 checks them first to last
        # (its tuple of field pointers is built in the reversed order too, so
        # the two reversals cancel). Hence a tuple with out-of-line data in two
        # or more elements fails rkyv's own validation; decoding in
        # declaration order reproduces exactly that.
        self.reverse = reverse
        self.deps_idx = [i for i, n in enumerate(nodes) if n.has_deps]
        if reverse:
            self.deps_idx.reverse()
        self.mem = sorted(range(len(nodes)), key=lambda i: offsets[i])

    def deps(self, vals: Any, w: _Writer) -> list[Any] | None:
        if not self.deps_idx:
            return None
        rs: list[Any] = [None] * len(self.nodes)
        nodes = self.nodes
        for i in self.deps_idx:
            rs[i] = nodes[i].deps(vals[i], w)
        return rs

    def write(self, out: bytearray, base: int, vals: Any, rs: list[Any] | None, pos: int) -> None:
        """Write the fields into ``out`` (the object's bytes, at absolute ``pos``)."""
        nodes, offsets = self.nodes, self.offsets
        for i in self.mem:
            node = nodes[i]
            o = base + offsets[i]
            b = node.obj(vals[i], None if rs is None else rs[i], pos + o)
            out[o:o + len(b)] = b

    def dec(self, d: _Dec, pos: int) -> list[Any]:
        return [n.dec(d, pos + o) for n, o in zip(self.nodes, self.offsets, strict=True)]


class _Flat:
    """One precompiled ``struct.Struct`` for fields that are all fixed-format scalars."""

    __slots__ = ("dec_convs", "enc_convs", "perm", "st")

    def __init__(self, nodes: list[_Node], offsets: list[int], size: int) -> None:
        mem = sorted(range(len(nodes)), key=lambda i: offsets[i])
        fmt = "<"
        at = 0
        for i in mem:
            if offsets[i] > at:
                fmt += f"{offsets[i] - at}x"
            fmt += typing.cast(str, nodes[i].fmt)
            at = offsets[i] + nodes[i].size
        if size > at:
            fmt += f"{size - at}x"
        self.st = struct.Struct(fmt)
        # Values are packed in memory order; perm maps memory slot -> field.
        self.perm = mem
        inv = [0] * len(mem)
        for slot, i in enumerate(mem):
            inv[i] = slot
        self.enc_convs: list[tuple[int, Callable[[Any], Any]]] = []
        self.dec_convs: list[tuple[int, int, Callable[[Any, int], Any]]] = []
        for slot, i in enumerate(mem):
            ec, dc = nodes[i].enc_conv, nodes[i].dec_conv
            if ec is not None:
                self.enc_convs.append((slot, ec))
            if dc is not None:
                self.dec_convs.append((slot, offsets[i], dc))


def _flat_for(nodes: list[_Node], offsets: list[int], size: int) -> _Flat | None:
    if nodes and all(n.fmt is not None and n.size > 0 for n in nodes):
        return _Flat(nodes, offsets, size)
    return None


class _StructNode(_Node):
    __slots__ = ("cls", "dec_perm", "fields", "flat", "getter", "names")

    def __init__(self, cls: type) -> None:
        super().__init__(cls.__name__)
        self.cls = cls

    def setup(self, names: list[str], nodes: list[_Node]) -> None:
        offsets, shape = struct_layout([n.shape for n in nodes])
        self.names = names
        self.fields = _Fields(nodes, offsets)
        self.has_deps = bool(self.fields.deps_idx)
        self.hashable = all(n.hashable for n in nodes) and self.cls.__hash__ is not None
        self.flat = _flat_for(nodes, offsets, shape.size)
        if self.flat is not None:
            mem_names = [names[i] for i in self.flat.perm]
            self.getter = _getter(mem_names)
            slot_of = {i: s for s, i in enumerate(self.flat.perm)}
            self.dec_perm = _getter_idx([slot_of[i] for i in range(len(names))])
        else:
            self.getter = _getter(names)
        self.set_shape(shape)

    def _check(self, v: Any) -> None:
        if not isinstance(v, self.cls):
            raise EncodeError(f"{self.name}: expected {self.cls.__name__}, got {_kind(v)} {v!r}")

    def deps(self, v: Any, w: _Writer) -> Any:
        self._check(v)
        vals = self.getter(v)
        return vals, self.fields.deps(vals, w)

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        flat = self.flat
        if flat is not None:
            if not isinstance(v, self.cls):
                self._check(v)
            vals: Any = self.getter(v)
            if flat.enc_convs:
                vals = list(vals)
                for slot, conv in flat.enc_convs:
                    vals[slot] = conv(vals[slot])
            try:
                return flat.st.pack(*vals)
            except (struct.error, TypeError, OverflowError):
                self._diagnose(v)
                raise
        if r is None:
            self._check(v)
            vals, rs = self.getter(v), None
        else:
            vals, rs = r
        out = bytearray(self.size)
        self.fields.write(out, 0, vals, rs, pos)
        return bytes(out)

    def _diagnose(self, v: Any) -> None:
        for name, node in zip(self.names, self.fields.nodes, strict=True):
            try:
                node.obj(getattr(v, name), None, 0)
            except EncodeError as e:
                raise EncodeError(f"{self.name}.{name}: {e}") from None

    def dec(self, d: _Dec, pos: int) -> Any:
        flat = self.flat
        if flat is not None:
            vals: Any = flat.st.unpack_from(d.data, pos)
            if flat.dec_convs:
                vals = list(vals)
                for slot, off, conv in flat.dec_convs:
                    vals[slot] = conv(vals[slot], pos + off)
            return self.cls(*self.dec_perm(vals))
        return self.cls(*self.fields.dec(d, pos))

    def feed(self, v: Any, archived: bool = False) -> bytes:
        return b"".join(n.feed(getattr(v, name), archived)
                        for name, n in zip(self.names, self.fields.nodes, strict=True))


def _getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    if not names:
        return lambda v: ()
    if len(names) == 1:
        g1 = operator.attrgetter(names[0])
        return lambda v: (g1(v),)
    return operator.attrgetter(*names)


def _getter_idx(idx: list[int]) -> Callable[[Any], Sequence[Any]]:
    # a list or a tuple (the identity returns its argument, the list of unpacked values)
    if len(idx) == 1:
        i0 = idx[0]
        return lambda v: (v[i0],)
    if idx == list(range(len(idx))):
        return lambda v: v
    return operator.itemgetter(*idx)


class _TupleNode(_Node):
    """Rust tuples (``repr(C)``) and arrays ``[T; N]``; Python tuples."""

    __slots__ = ("dec_perm", "elem", "fields", "flat", "is_array", "n")

    def __init__(self, nodes: list[_Node], name: str, elem: _Node | None = None) -> None:
        super().__init__(name)
        is_array = elem is not None
        if elem is not None:
            offsets, shape = c_layout([n.shape for n in nodes])
            shape = array_shape(elem.shape, len(nodes))
            self.elem = elem
        else:
            offsets, shape = tuple_layout([n.shape for n in nodes])
        self.n = len(nodes)
        self.is_array = is_array
        self.fields = _Fields(nodes, offsets, reverse=not is_array)
        self.has_deps = bool(self.fields.deps_idx)
        self.hashable = all(x.hashable for x in nodes)
        self.flat = _flat_for(nodes, offsets, shape.size)
        if self.flat is not None:
            slot_of = {i: s for s, i in enumerate(self.flat.perm)}
            self.dec_perm = _getter_idx([slot_of[i] for i in range(len(nodes))])
        self.set_shape(shape)

    def _check(self, v: Any) -> None:
        if not isinstance(v, (tuple, list)):
            raise EncodeError(f"{self.name}: expected a tuple, got {_kind(v)} {v!r}")
        if len(v) != self.n:
            raise EncodeError(f"{self.name}: expected {self.n} items, got {len(v)}")

    def deps(self, v: Any, w: _Writer) -> Any:
        self._check(v)
        return self.fields.deps(v, w)

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        if r is None:
            self._check(v)
        flat = self.flat
        if flat is not None:
            vals = [v[i] for i in flat.perm]
            for slot, conv in flat.enc_convs:
                vals[slot] = conv(vals[slot])
            try:
                return flat.st.pack(*vals)
            except (struct.error, TypeError, OverflowError):
                for node, x in zip(self.fields.nodes, v, strict=True):
                    node.obj(x, None, 0)
                raise
        out = bytearray(self.size)
        self.fields.write(out, 0, v, r, pos)
        return bytes(out)

    def dec(self, d: _Dec, pos: int) -> Any:
        flat = self.flat
        if flat is not None:
            vals = list(flat.st.unpack_from(d.data, pos))
            for slot, off, conv in flat.dec_convs:
                vals[slot] = conv(vals[slot], pos + off)
            return tuple(self.dec_perm(vals))
        return tuple(self.fields.dec(d, pos))

    def feed(self, v: Any, archived: bool = False) -> bytes:
        if self.is_array:
            return _hash_items(self.elem, v, archived)
        return b"".join(n.feed(x, archived) for n, x in zip(self.fields.nodes, v, strict=True))


class _UnitEnumNode(_Node):
    __slots__ = ("index", "members", "st")

    def __init__(self, cls: type[enum.Enum]) -> None:
        super().__init__(cls.__name__)
        self.members = list(cls)
        if not self.members:
            raise TypeError(f"enum {cls.__name__} has no members")
        self.index = {m: i for i, m in enumerate(self.members)}
        ts, _, shape = enum_layout(len(self.members), [[] for _ in self.members])
        self.st = _U8 if ts == 1 else _U16
        self.fmt = "B" if ts == 1 else "H"
        self.enc_conv = self._enc
        self.dec_conv = self._dec
        self.set_shape(shape)

    def _enc(self, v: Any) -> int:
        try:
            return self.index[v]
        except (KeyError, TypeError):
            raise EncodeError(f"{self.name}: expected a {self.name} member, got {v!r}") from None

    def _dec(self, tag: int, pos: int) -> Any:
        if tag >= len(self.members):
            raise DecodeError(
                f"{self.name} at offset {pos}: tag {tag} is out of range "
                f"(0..{len(self.members)})"
            )
        return self.members[tag]

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        return self.st.pack(self._enc(v))

    def dec(self, d: _Dec, pos: int) -> Any:
        return self._dec(self.st.unpack_from(d.data, pos)[0], pos)


class _EnumNode(_Node):
    """Data-carrying enums (Variant unions), Option and Result."""

    __slots__ = ("by_cls", "flats", "getters", "kind", "makers", "tag_st", "variants")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.kind = "enum"

    def setup(self, classes: list[Any], fields: list[list[_Node]],
              getters: list[Callable[[Any], Any]], makers: list[Callable[..., Any]]) -> None:
        ts, offsets, shape = enum_layout(len(fields), [[n.shape for n in f] for f in fields])
        self.tag_st = _U8 if ts == 1 else _U16
        self.variants = [_Fields(f, o) for f, o in zip(fields, offsets, strict=True)]
        self.by_cls = {c: i for i, c in enumerate(classes)}
        self.getters = getters
        self.makers = makers
        self.has_deps = any(v.deps_idx for v in self.variants)
        self.set_shape(shape)

    def _tag(self, v: Any) -> int:
        tag = self.by_cls.get(type(v))
        if tag is None:
            for c, i in self.by_cls.items():
                if isinstance(c, type) and isinstance(v, c):
                    return i
            raise EncodeError(f"{self.name}: {_kind(v)} {v!r} is not one of its variants")
        return tag

    def deps(self, v: Any, w: _Writer) -> Any:
        tag = self._tag(v)
        vals = self.getters[tag](v)
        return tag, vals, self.variants[tag].deps(vals, w)

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        if r is None:
            tag = self._tag(v)
            vals, rs = self.getters[tag](v), None
        else:
            tag, vals, rs = r
        out = bytearray(self.size)
        tb = self.tag_st.pack(tag)
        out[0:len(tb)] = tb
        self.variants[tag].write(out, 0, vals, rs, pos)
        return bytes(out)

    def dec(self, d: _Dec, pos: int) -> Any:
        (tag,) = self.tag_st.unpack_from(d.data, pos)
        if tag >= len(self.variants):
            raise DecodeError(
                f"{self.name} at offset {pos}: tag {tag} is out of range (0..{len(self.variants)})"
            )
        return self.makers[tag](*self.variants[tag].dec(d, pos))


_NONE_GETTER: Callable[[Any], tuple[Any, ...]] = lambda v: ()  # noqa: E731


class _OptionNode(_EnumNode):
    """``ArchivedOption<T>``: a ``repr(u8)`` enum (``None`` = 0, ``Some(T)`` = 1), so
    the payload sits after the tag at its own alignment, whatever T is (another
    option, a data enum, a struct: each keeps its own tag and layout)."""

    __slots__ = ()

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.nullable = True

    def _tag(self, v: Any) -> int:
        return 0 if v is None else 1


class _SomeOptionNode(_OptionNode):
    """``Option[T]``: values are ``None`` or :class:`Some`."""

    __slots__ = ()

    def _tag(self, v: Any) -> int:
        if v is None:
            return 0
        if isinstance(v, Some):
            return 1
        raise EncodeError(f"{self.name}: expected None or Some(...), got {_kind(v)} {v!r}")


def _option_node(inner: _Node) -> _EnumNode:
    if inner.nullable:
        raise TypeError(f"Optional[{inner.name}] is ambiguous (None is already one of "
                        f"{inner.name}'s values): use Option[...] from hardlight_core._types")
    node = _OptionNode(f"Option<{inner.name}>")
    node.setup([type(None), object], [[], [inner]], [_NONE_GETTER, lambda v: (v,)],
               [lambda: None, lambda x: x])
    return node


def _some_option_node(inner: _Node) -> _EnumNode:
    node = _SomeOptionNode(f"Option<{inner.name}>")
    node.setup([type(None), Some], [[], [inner]], [_NONE_GETTER, lambda v: (v.value,)],
               [lambda: None, Some])
    return node


def _result_node(ok: _Node, err: _Node) -> _EnumNode:
    node = _EnumNode(f"Result<{ok.name}, {err.name}>")
    node.setup([Ok, Err], [[ok], [err]], [lambda v: (v.value,), lambda v: (v.error,)],
               [Ok, Err])
    return node


class _MapNode(_Node):
    __slots__ = ("entry", "key", "val")

    def __init__(self, key: _Node, val: _Node) -> None:
        super().__init__(f"HashMap<{key.name}, {val.name}>")
        if not key.hashable:
            raise TypeError(f"{key.name} cannot be a HashMap key (rkyv cannot hash it the same "
                            "way when writing and when validating)")
        self.key = key
        self.val = val
        self.entry = _Fields([key, val], struct_layout([key.shape, val.shape])[0])
        self.has_deps = True
        # ArchivedHashMap { index: { len, displace }, entries }: no reordering applies.
        self.set_shape(Shape(12, 4))

    def _entry_shape(self) -> Shape:
        return struct_layout([self.key.shape, self.val.shape])[1]

    def deps(self, v: Any, w: _Writer) -> Any:
        if not isinstance(v, Mapping):
            raise EncodeError(f"{self.name}: expected a dict, got {_kind(v)}")
        items = list(v.items())
        kn, vn = self.key, self.val
        feeds = [kn.feed(k) for k, _ in items]
        displace, order = build_index(feeds)
        n = len(items)
        _pad(w, 4)
        dpos = len(w)
        w += struct.pack(f"<{n}I", *displace)
        slots = [items[i] for i in order]
        rs = [(kn.deps(k, w) if kn.has_deps else None, vn.deps(x, w) if vn.has_deps else None)
              for k, x in slots]
        es = self._entry_shape()
        _pad(w, es.align)
        epos = len(w)
        for (k, x), r in zip(slots, rs, strict=True):
            out = bytearray(es.size)
            self.entry.write(out, 0, (k, x), list(r), len(w))
            w += out
        return n, dpos, epos

    def obj(self, v: Any, r: Any, pos: int) -> bytes:
        n, dpos, epos = r
        return struct.pack("<Iii", n, dpos - (pos + 4), epos - (pos + 8))

    def dec(self, d: _Dec, pos: int) -> Any:
        n, doff, eoff = struct.unpack_from("<Iii", d.data, pos)
        what = self.name
        t = d.ptr(pos + 4, doff, 4 * n, 4, what + " displacements")
        displace = struct.unpack_from(f"<{n}I", d.data, t)
        d.lo = t + 4 * n
        for i, x in enumerate(displace):
            if n <= x < SEED_BASE:
                raise DecodeError(f"{what} at offset {pos}: invalid displacement {x} at index {i}")
        es = self._entry_shape()
        if es.size == 0 and n > MAX_ZST_ELEMENTS:
            raise DecodeError(f"{what} at offset {pos}: too many zero-sized entries ({n})")
        t = d.ptr(pos + 8, eoff, n * es.size, es.align, what + " entries")
        saved = d.hi
        d.hi = t
        d.enter(what, pos)
        entries = [self.entry.dec(d, t + i * es.size) for i in range(n)]
        d.depth -= 1
        d.lo = t + n * es.size
        d.hi = saved
        out: dict[Any, Any] = {}
        kn = self.key
        for i, (k, x) in enumerate(entries):
            # rkyv's validator hashes the archived key (ArchivedHashIndex::index).
            if lookup(displace, kn.feed(k, True)) != i:
                raise DecodeError(f"{what} at offset {pos}: entry {i} is not where the hash "
                                  "index puts its key")
            out[_freeze(k)] = x
        return out


def _freeze(k: Any) -> Any:
    """A decoded map key as a hashable value: ``Vec`` keys decode to lists, so
    turn lists (at any depth of tuples) into tuples."""
    if isinstance(k, (list, tuple)):
        return tuple(_freeze(x) for x in k)
    return k


# ---------------------------------------------------------------- compilation

_NODES: dict[Any, _Node] = {}


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _struct_hints(tp: Any) -> tuple[type, list[str], list[Any]]:
    origin = typing.get_origin(tp)
    cls = origin if origin is not None else tp
    hints = typing.get_type_hints(cls, include_extras=True)
    names = list(cls.__struct_fields__)
    hs = [hints[n] for n in names]
    params = getattr(cls, "__parameters__", ())
    if origin is not None and params:
        mapping = dict(zip(params, typing.get_args(tp), strict=False))
        hs = [_subst(h, mapping) for h in hs]
    return cls, names, hs


def _subst(h: Any, mapping: dict[Any, Any]) -> Any:
    if isinstance(h, TypeVar):
        return mapping.get(h, h)
    ps = getattr(h, "__parameters__", ())
    if ps:
        return h[tuple(mapping.get(p, p) for p in ps)]
    return h


def _need(node: _Node, ctx: str) -> _Node:
    if not node.finished:
        raise TypeError(f"{ctx} contains itself without indirection: use Box[...] or list[...]")
    return node


def _compile(tp: Any) -> _Node:
    try:
        cached = _NODES.get(tp)
    except TypeError:  # unhashable metadata: compile without caching
        return _build(tp)
    if cached is not None:
        return cached
    node = _build(tp)
    _NODES[tp] = node
    return node


def _build(tp: Any) -> _Node:
    if tp is None or tp is type(None):
        return _UnitNode()
    if typing.get_origin(tp) is Annotated:
        base, *meta = typing.get_args(tp)
        node: _Node | None = None
        for m in meta:
            if isinstance(m, Int):
                if base is not int:
                    raise TypeError(f"{m.name} must annotate int, not {base!r}")
                node = _IntNode(m)
            elif isinstance(m, Float):
                node = _FloatNode(m)
            elif isinstance(m, CharMarker):
                node = _CharNode()
            elif isinstance(m, BoxMarker):
                node = _BoxNode(node if node is not None else _compile(base))
            elif isinstance(m, ArrayLen):
                args = typing.get_args(base)
                if node is not None or typing.get_origin(base) is not tuple or len(args) != 2 \
                        or args[1] is not Ellipsis:
                    raise TypeError(f"ArrayLen must annotate tuple[T, ...], not {base!r}")
                elem = _need(_compile(args[0]), "Array")
                node = _TupleNode([elem] * m.n, f"[{elem.name}; {m.n}]", elem)
        return node if node is not None else _compile(base)
    if tp is bool:
        return _BoolNode()
    if tp is int:
        raise TypeError("plain int has no Rust width: annotate with u8, u16, u32, u64, u128, "
                        "i8 .. i128, usize or isize from hardlight_core")
    if tp is float:
        return _FloatNode(Float("f64", 64))
    if tp is str:
        return _StrNode()
    if tp is bytes:
        return _BytesNode()
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list:
        if len(args) != 1:
            raise TypeError("list needs an element type: list[T]")
        return _VecNode(_compile(args[0]))
    if origin is dict:
        if len(args) != 2:
            raise TypeError("dict needs key and value types: dict[K, V]")
        return _MapNode(_need(_compile(args[0]), "dict key"), _need(_compile(args[1]), "dict"))
    if origin is tuple or tp is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            raise TypeError("tuple[T, ...] has no fixed length: use Array[T, N]")
        if args == ((),):
            args = ()
        nodes = [_need(_compile(a), "tuple") for a in args]
        return _TupleNode(nodes, "(" + ", ".join(n.name for n in nodes) + ")")
    if _is_union(tp):
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) != len(args)
        inner: _Node
        somes = [a for a in rest if a is Some or typing.get_origin(a) is Some]
        if somes:
            if not optional or len(rest) != 1 or rest[0] is Some:
                raise TypeError(f"Some[T] only appears as Option[T] (Some[T] | None), not in "
                                f"{tp!r}")
            return _some_option_node(_need(_compile(typing.get_args(rest[0])[0]), "Option"))
        if len(rest) == 2 and typing.get_origin(rest[0]) is Ok \
                and typing.get_origin(rest[1]) is Err:
            inner = _result_node(_need(_compile(typing.get_args(rest[0])[0]), "Result"),
                                 _need(_compile(typing.get_args(rest[1])[0]), "Result"))
        elif len(rest) == 1:
            inner = _compile(rest[0])
        elif all(isinstance(a, type) and issubclass(a, Variant) for a in rest):
            inner = _variant_enum(rest)
        else:
            raise TypeError(f"unsupported union {tp!r}: use Optional[T], Result[T, E] or a "
                            "union of Variant subclasses")
        if optional:
            return _option_node(_need(inner, "Option"))
        return inner
    cls = origin if origin is not None else tp
    if isinstance(cls, type):
        if issubclass(cls, Some):
            raise TypeError("Some[T] only appears as Option[T] (Some[T] | None)")
        if issubclass(cls, Variant):
            return _variant_enum([tp])
        if issubclass(cls, msgspec.Struct):
            return _struct_node(tp)
        if issubclass(cls, enum.Enum):
            return _UnitEnumNode(cls)
    if isinstance(tp, TypeVar):
        raise TypeError(f"unbound type variable {tp!r}")
    raise TypeError(f"{tp!r} is not a supported rkyv type")


def _struct_node(tp: Any) -> _Node:
    cls, names, hints = _struct_hints(tp)
    node = _StructNode(cls)
    _NODES[tp] = node  # lets recursive references (through Box/list/dict) find it
    try:
        node.setup(names, [_need(_compile(h), cls.__name__) for h in hints])
    except BaseException:
        del _NODES[tp]
        raise
    return node


def _variant_enum(variants: list[Any]) -> _Node:
    node = _EnumNode(" | ".join(getattr(v, "__name__", repr(v)) for v in variants))
    key = variants[0] if len(variants) == 1 else typing.Union[tuple(variants)]  # noqa: UP007
    _NODES[key] = node
    try:
        fields: list[list[_Node]] = []
        getters: list[Callable[[Any], Any]] = []
        classes: list[Any] = []
        for v in variants:
            cls, names, hints = _struct_hints(v)
            fields.append([_need(_compile(h), cls.__name__) for h in hints])
            getters.append(_getter(names))
            classes.append(cls)
        node.setup(classes, fields, getters, classes)
    except BaseException:
        del _NODES[key]
        raise
    return node


# ---------------------------------------------------------------- public API


class Codec:
    """A compiled codec for one type: ``encode(value)``, ``decode(data)``, ``size``, ``align``."""

    __slots__ = ("_node", "align", "size", "type")

    def __init__(self, tp: Any, node: _Node) -> None:
        self.type = tp
        self._node = node
        self.size = node.size
        self.align = node.align

    def __repr__(self) -> str:
        return f"<Codec {self._node.name} size={self.size} align={self.align}>"

    def encode(self, value: Any) -> bytes:
        """Archive ``value`` as ``rkyv::to_bytes`` would."""
        node = self._node
        try:
            if not node.has_deps:
                return node.obj(value, None, 0)
            w = bytearray()
            r = node.deps(value, w)
            _pad(w, node.align)
            w += node.obj(value, r, len(w))
            return bytes(w)
        except EncodeError:
            raise
        except (TypeError, ValueError, AttributeError, OverflowError, struct.error,
                KeyError, IndexError) as e:
            raise EncodeError(f"{node.name}: cannot encode {_kind(value)}: {e}") from None
        except RecursionError:
            raise EncodeError(f"{node.name}: value nested too deeply") from None

    def decode(self, data: bytes | bytearray | memoryview) -> Any:
        """Validate ``data`` as ``rkyv::from_bytes`` would and return the value."""
        if type(data) is not bytes:
            data = bytes(data)
        node = self._node
        n = len(data)
        root = n - node.size
        if root < 0:
            raise DecodeError(
                f"{node.name}: buffer of {n} bytes is too short for the {node.size}-byte root"
            )
        if root & (node.align - 1):
            raise DecodeError(
                f"{node.name}: root at offset {root} is not aligned to {node.align}"
            )
        d = _Dec(data)
        d.hi = root
        # Every check is explicit; any other exception here is a codec bug and
        # is left to propagate as itself.
        return node.dec(d, root)


_CODECS: dict[Any, Codec] = {}


def codec_for(tp: Any) -> Codec:
    """The cached compiled :class:`Codec` for the type hint ``tp``."""
    try:
        c = _CODECS.get(tp)
    except TypeError:
        return Codec(tp, _need(_compile(tp), repr(tp)))
    if c is None:
        c = _CODECS[tp] = Codec(tp, _need(_compile(tp), repr(tp)))
    return c


def encode(value: Any, tp: Any) -> bytes:
    """Archive ``value`` of type ``tp`` to rkyv 0.7 bytes (raises :class:`EncodeError`)."""
    return codec_for(tp).encode(value)


def decode(data: bytes | bytearray | memoryview, tp: Any) -> Any:
    """Read a value of type ``tp`` from rkyv 0.7 bytes (raises :class:`DecodeError`)."""
    return codec_for(tp).decode(data)


def tuples_rkyv_rejects(tp: Any) -> list[Any]:
    """The tuple types inside ``tp`` of which two or more elements may hold out-of-line
    data (a ``String`` over 8 bytes, ``Vec``, ``Box``, ``HashMap``, ...).

    rkyv 0.7 writes such a tuple's data last element first but validates it first to
    last, so it rejects its own archive of one whose data really is in two elements (and
    so does our decoder, to agree with it). Such a type encodes, but those values do not
    decode, on either side: a struct with the same fields has no such problem.
    """
    found: list[Any] = []
    _find_tuples(tp, found, set())
    return found


def _find_tuples(tp: Any, found: list[Any], seen: set[int]) -> None:
    if id(tp) in seen:
        return
    seen.add(id(tp))
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and args and args != ((),):
        with_data = [a for a in args if _may_hold_data(a)]
        if len(with_data) >= 2:
            found.append(tp)
    children: list[Any] = [a for a in args if not isinstance(a, (int, str))]
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        with contextlib.suppress(Exception):
            children.extend(typing.get_type_hints(tp, include_extras=True).values())
    for child in children:
        _find_tuples(child, found, seen)


def _may_hold_data(tp: Any) -> bool:
    try:
        return bool(codec_for(tp)._node.has_deps)
    except (TypeError, AttributeError):
        return False
