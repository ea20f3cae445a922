"""A differential checker of the codec against the real rkyv 0.7.

:func:`run_oracle` generates random nested Rust types (structs, tuples, enums
with unit/tuple/struct variants, ``Option``, ``Result``, ``Box``, ``Vec``,
``String``, ``HashMap``, arrays, every integer width, ``f32``/``f64``, ``char``,
``bool``; depth up to 4) and random values, writes one Rust program holding all
of them, builds it once with cargo (offline, crates from Debian's
``librust-rkyv-dev`` through source replacement, rkyv's default features
``size_32`` + ``std`` plus ``validation``) and then, for every type:

* our ``encode(value)`` must equal ``rkyv::to_bytes::<_, 1024>(&value)``;
* our ``decode`` of rkyv's bytes must give the value back;
* each archive is mutated (bit flips, truncation, tag-like byte values, pointer
  and length nudges) and our decoder's accept/reject must equal
  ``rkyv::from_bytes``'s (``check_archived_root`` + deserialize); when both
  accept, our re-encoding of what we decoded must equal rkyv's re-serialization
  of what it deserialized.

A failing type is shrunk (subtrees replaced by simpler types, fields and
variants dropped) by further builds while it still fails.

Types are written in the JSON notation of the vector files (``data/vectors``)
with one addition: ``{"option": T, "some": true}`` is ``Option[T]`` (values
``None`` / :class:`~hardlight_core._types.Some`), which is also what
``{"option": T}`` means when ``T`` itself can be ``None`` (options, unit, boxes
of those) since ``Optional[Optional[T]]`` flattens in Python.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import json
import math
import os
import random
import shutil
import struct
import subprocess
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import msgspec

from hardlight_core import DecodeError, codec_for
from hardlight_core import _types as T

__all__ = [
    "DEFAULT_REGISTRY",
    "OracleResult",
    "Toolchain",
    "find_toolchain",
    "gen_type",
    "gen_value",
    "hint_for",
    "is_nullable",
    "run_oracle",
    "rust_type",
    "value_from_json",
    "value_to_json",
    "values_equal",
]

DEFAULT_REGISTRY = "/usr/share/cargo/registry"
"""Where Debian's ``librust-*-dev`` packages put crate sources."""

INTS: dict[str, tuple[int, int]] = {
    "u8": (0, 2**8 - 1), "u16": (0, 2**16 - 1), "u32": (0, 2**32 - 1),
    "u64": (0, 2**64 - 1), "u128": (0, 2**128 - 1),
    "i8": (-(2**7), 2**7 - 1), "i16": (-(2**15), 2**15 - 1), "i32": (-(2**31), 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1), "i128": (-(2**127), 2**127 - 1),
    # size_32: archived as u32 / i32, so only values that fit are archivable.
    "usize": (0, 2**32 - 1), "isize": (-(2**31), 2**31 - 1),
}
_SCALAR_HINTS: dict[str, Any] = {
    **{k: getattr(T, k) for k in INTS},
    "f32": T.f32, "f64": T.f64, "bool": bool, "char": T.char, "string": str,
    "bytes": bytes, "unit": None,
}
_RUST_SCALARS = {**{k: k for k in INTS}, "f32": "f32", "f64": "f64", "bool": "bool",
                 "char": "char", "string": "String", "bytes": "Vec<u8>", "unit": "()"}
MAX_DEPTH = 4


# ---------------------------------------------------------------- types


def is_nullable(t: Any) -> bool:
    """Whether ``None`` is one of the Python values of type ``t``."""
    if t == "unit":
        return True
    if isinstance(t, dict):
        if "option" in t:
            return True
        if "box" in t:
            return is_nullable(t["box"])
    return False


def _some_form(t: dict[str, Any]) -> bool:
    return bool(t.get("some")) or is_nullable(t["option"])


class _Gen:
    """Random types; struct/enum names are unique within one generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def scalar(self) -> Any:
        r = self.rng
        return r.choice([*INTS, "f32", "f64", "bool", "char", "string", "string", "bytes",
                         "unit"])

    def key(self, depth: int) -> Any:
        """A type rkyv can use as a HashMap key (Hash + Eq, archived too)."""
        r = self.rng
        if depth >= MAX_DEPTH or r.random() < 0.6:
            return r.choice([*INTS, "bool", "char", "string", "string", "bytes", "usize"])
        k = r.choice(["tuple", "array", "vec", "box"])
        if k == "tuple":
            return {"tuple": [self.key(depth + 1) for _ in range(r.randint(1, 3))]}
        if k == "array":
            return {"array": self.key(depth + 1), "len": r.randint(0, 3)}
        if k == "vec":
            return {"vec": self.key(depth + 1)}
        return {"box": self.key(depth + 1)}

    def type(self, depth: int = 0) -> Any:
        r = self.rng
        if depth >= MAX_DEPTH or (depth > 0 and r.random() < 0.35):
            return self.scalar()
        kinds = ["struct"] * 3 + ["enum"] * 3 + ["option"] * 4 + ["tuple"] * 2 + \
            ["result"] * 2 + ["box"] * 2 + ["vec"] * 2 + ["map"] * 2 + ["array"] * 2
        k = r.choice(kinds)
        d = depth + 1
        if k == "struct":
            fields = [[f"f{i}", self.type(d)] for i in range(r.randint(0, 4))]
            return {"struct": self.name("S"), "fields": fields}
        if k == "enum":
            if r.random() < 0.04:  # a u16 tag
                n = r.randint(256, 300)
                return {"enum": self.name("E"), "variants": [[f"V{i}", None] for i in range(n)]}
            variants: list[list[Any]] = []
            for i in range(r.randint(1, 5)):
                shape = r.choice(["unit", "tuple", "struct"])
                if shape == "unit":
                    variants.append([f"V{i}", None])
                elif shape == "tuple":
                    variants.append([f"V{i}", {"tuple": [self.type(d)
                                                         for _ in range(r.randint(1, 3))]}])
                else:
                    variants.append([f"V{i}", {"fields": [[f"x{j}", self.type(d)]
                                                          for j in range(r.randint(1, 3))]}])
            return {"enum": self.name("E"), "variants": variants}
        if k == "option":
            t: dict[str, Any] = {"option": self.type(d)}
            if not is_nullable(t["option"]) and r.random() < 0.25:
                t["some"] = True
            return t
        if k == "tuple":
            return {"tuple": [self.type(d) for _ in range(r.randint(1, 4))]}
        if k == "result":
            return {"result": [self.type(d), self.type(d)]}
        if k == "box":
            return {"box": self.type(d)}
        if k == "vec":
            return {"vec": self.type(d)}
        if k == "map":
            return {"map": [self.key(d), self.type(d)]}
        return {"array": self.type(d), "len": r.randint(0, 3)}


def gen_type(rng: random.Random) -> Any:
    """A random type (JSON notation), depth up to 4."""
    return _Gen(rng).type()


_HINTS: dict[str, Any] = {}


def hint_for(t: Any) -> Any:
    """The Python type hint of notation ``t`` (cached per distinct notation)."""
    key = json.dumps(t, sort_keys=True)
    if key not in _HINTS:
        _HINTS[key] = _build_hint(t)
    return _HINTS[key]


def _build_hint(t: Any) -> Any:
    if isinstance(t, str):
        return _SCALAR_HINTS[t]
    if "vec" in t:
        return list.__class_getitem__(hint_for(t["vec"]))
    if "option" in t:
        inner = hint_for(t["option"])
        if _some_form(t):
            opt: Any = T.Option
            return opt[inner]
        return Optional[inner]  # noqa: UP045
    if "box" in t:
        box: Any = T.Box
        return box[hint_for(t["box"])]
    if "array" in t:
        return T.Array[hint_for(t["array"]), int(t["len"])]
    if "tuple" in t:
        return tuple.__class_getitem__(tuple(hint_for(x) for x in t["tuple"]))
    if "result" in t:
        result: Any = T.Result
        return result[hint_for(t["result"][0]), hint_for(t["result"][1])]
    if "map" in t:
        return dict.__class_getitem__((hint_for(t["map"][0]), hint_for(t["map"][1])))
    if "struct" in t:
        return msgspec.defstruct(t["struct"], [(n, hint_for(ft)) for n, ft in t["fields"]])
    if "enum" in t:
        variants = t["variants"]
        if all(body is None for _, body in variants):
            return enum.Enum(t["enum"], [(n, i) for i, (n, _) in enumerate(variants)])
        classes = [msgspec.defstruct(n, [(fn, hint_for(ft)) for fn, ft in _variant_fields(b)],
                                     bases=(T.Variant,), frozen=True)
                   for n, b in variants]
        if len(classes) == 1:
            return classes[0]
        return typing.Union[tuple(classes)]  # noqa: UP007
    raise ValueError(f"unknown type notation {t!r}")


def _variant_fields(body: Any) -> list[tuple[str, Any]]:
    if body is None:
        return []
    if "tuple" in body:
        return [(f"f{i}", x) for i, x in enumerate(body["tuple"])]
    return [(n, x) for n, x in body["fields"]]


def _classes(t: dict[str, Any]) -> list[Any]:
    h = hint_for(t)
    if isinstance(h, type):
        return list(h) if issubclass(h, enum.Enum) else [h]
    return list(typing.get_args(h))


# ---------------------------------------------------------------- values


def _rand_int(r: random.Random, lo: int, hi: int) -> int:
    p = r.random()
    if p < 0.15:
        return r.choice([lo, hi, 0 if lo <= 0 <= hi else lo])
    if p < 0.5:
        return max(lo, min(hi, r.randint(-300, 300)))
    return r.randint(lo, hi)


def _rand_char(r: random.Random) -> str:
    while True:
        c = r.choice([r.randint(0x20, 0x7E), r.randint(0, 0x7FF), r.randint(0, 0xFFFF),
                      r.randint(0, 0x10FFFF)])
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def gen_value(t: Any, r: random.Random) -> Any:
    """A random Python value of type ``t`` (in the codec's value conventions)."""
    if isinstance(t, str):
        if t in INTS:
            return _rand_int(r, *INTS[t])
        if t == "f32":
            bits = r.choice([r.getrandbits(32), 0x7FC00000, 0x80000000, 0x7F800000,
                             0x3F800000])
            if (bits & 0x7F800000) == 0x7F800000 and bits & 0x7FFFFF:
                bits = 0x7FC00000 | (bits & 0x80000000)  # NaN: the payload struct keeps
            return struct.unpack("<f", struct.pack("<I", bits))[0]
        if t == "f64":
            bits = r.choice([r.getrandbits(64), 0x7FF8000000000000, 0x8000000000000000])
            return struct.unpack("<d", struct.pack("<Q", bits))[0]
        if t == "bool":
            return r.random() < 0.5
        if t == "char":
            return _rand_char(r)
        if t == "string":
            n = r.choice([0, 1, 5, 7, 8, 9, 15, r.randint(0, 30)])
            s = ""
            while len(s.encode()) < n:
                s += chr(r.randint(0x61, 0x7A)) if r.random() < 0.7 else _rand_char(r)
            return s
        if t == "bytes":
            return bytes(r.getrandbits(8) for _ in range(r.randint(0, 12)))
        if t == "unit":
            return None
        raise ValueError(t)
    if "vec" in t:
        return [gen_value(t["vec"], r) for _ in range(r.randint(0, 3))]
    if "option" in t:
        if r.random() < 0.3:
            return None
        v = gen_value(t["option"], r)
        return T.Some(v) if _some_form(t) else v
    if "box" in t:
        return gen_value(t["box"], r)
    if "array" in t:
        return tuple(gen_value(t["array"], r) for _ in range(t["len"]))
    if "tuple" in t:
        return tuple(gen_value(x, r) for x in t["tuple"])
    if "result" in t:
        if r.random() < 0.5:
            return T.Ok(gen_value(t["result"][0], r))
        return T.Err(gen_value(t["result"][1], r))
    if "map" in t:
        kt, vt = t["map"]
        out: dict[Any, Any] = {}
        for _ in range(r.choice([0, 1, 2, 3, 5, 7])):
            k = _as_key(gen_value(kt, r))
            out[k] = gen_value(vt, r)
        return out
    if "struct" in t:
        cls = hint_for(t)
        return cls(*[gen_value(ft, r) for _, ft in t["fields"]])
    if "enum" in t:
        i = r.randrange(len(t["variants"]))
        cls = _classes(t)[i]
        body = t["variants"][i][1]
        if isinstance(cls, enum.Enum):
            return cls
        return cls(*[gen_value(ft, r) for _, ft in _variant_fields(body)])
    raise ValueError(t)


def _as_key(v: Any) -> Any:
    # Vec keys are Python tuples (the decoder gives map keys back as tuples).
    if isinstance(v, (list, tuple)):
        return tuple(_as_key(x) for x in v)
    return v


def value_to_json(t: Any, v: Any) -> Any:
    """A JSON form of value ``v`` of type ``t`` (exact: floats as bit patterns)."""
    if isinstance(t, str):
        if t == "f32":
            return f"0x{_f32_bits(v):08x}"
        if t == "f64":
            return "0x{:016x}".format(struct.unpack("<Q", struct.pack("<d", v))[0])
        if t == "bytes":
            return bytes(v).hex()
        if t in INTS and abs(v) > 2**53:
            return str(v)
        return v
    if "vec" in t:
        return [value_to_json(t["vec"], x) for x in v]
    if "option" in t:
        if v is None:
            return None
        return {"Some": value_to_json(t["option"], v.value if _some_form(t) else v)}
    if "box" in t:
        return value_to_json(t["box"], v)
    if "array" in t:
        return [value_to_json(t["array"], x) for x in v]
    if "tuple" in t:
        return [value_to_json(x, y) for x, y in zip(t["tuple"], v, strict=True)]
    if "result" in t:
        if isinstance(v, T.Ok):
            return {"Ok": value_to_json(t["result"][0], v.value)}
        return {"Err": value_to_json(t["result"][1], v.error)}
    if "map" in t:
        kt, vt = t["map"]
        return [[value_to_json(kt, k), value_to_json(vt, x)] for k, x in v.items()]
    if "struct" in t:
        return [value_to_json(ft, getattr(v, n)) for n, ft in t["fields"]]
    if "enum" in t:
        i = _classes(t).index(v if isinstance(v, enum.Enum) else type(v))
        name, body = t["variants"][i]
        if body is None:
            return name
        return {name: [value_to_json(ft, getattr(v, fn)) for fn, ft in _variant_fields(body)]}
    raise ValueError(t)


def value_from_json(t: Any, j: Any, key: bool = False) -> Any:
    """The Python value of type ``t`` for the JSON form ``j`` (:func:`value_to_json`)."""
    if isinstance(t, str):
        if t == "f32":
            return struct.unpack("<f", struct.pack("<I", int(j, 16)))[0]
        if t == "f64":
            return struct.unpack("<d", struct.pack("<Q", int(j, 16)))[0]
        if t == "bytes":
            return bytes.fromhex(j)
        if t in INTS:
            return int(j)
        return j
    seq: Callable[[Iterator[Any]], Any] = tuple if key else list
    if "vec" in t:
        return seq(value_from_json(t["vec"], x, key) for x in j)
    if "option" in t:
        if j is None:
            return None
        v = value_from_json(t["option"], j["Some"], key)
        return T.Some(v) if _some_form(t) else v
    if "box" in t:
        return value_from_json(t["box"], j, key)
    if "array" in t:
        return tuple(value_from_json(t["array"], x, key) for x in j)
    if "tuple" in t:
        return tuple(value_from_json(x, y, key) for x, y in zip(t["tuple"], j, strict=True))
    if "result" in t:
        if "Ok" in j:
            return T.Ok(value_from_json(t["result"][0], j["Ok"], key))
        return T.Err(value_from_json(t["result"][1], j["Err"], key))
    if "map" in t:
        kt, vt = t["map"]
        return {value_from_json(kt, k, True): value_from_json(vt, x) for k, x in j}
    if "struct" in t:
        return hint_for(t)(*[value_from_json(ft, x) for (_, ft), x
                             in zip(t["fields"], j, strict=True)])
    if "enum" in t:
        name = j if isinstance(j, str) else next(iter(j))
        i = [n for n, _ in t["variants"]].index(name)
        cls = _classes(t)[i]
        if isinstance(cls, enum.Enum):
            return cls
        body = t["variants"][i][1]
        return cls(*[value_from_json(ft, x) for (_, ft), x
                     in zip(_variant_fields(body), j[name], strict=True)])
    raise ValueError(t)


def values_equal(a: Any, b: Any) -> bool:
    """Deep equality: types must match, floats compare by bits (NaN payloads too)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, msgspec.Struct):
        return type(a) is type(b) and values_equal(msgspec.structs.astuple(a),
                                                   msgspec.structs.astuple(b))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(
            values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            values_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _f32_bits(v: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", v))[0])


# ---------------------------------------------------------------- Rust


def rust_type(t: Any, prefix: str = "") -> str:
    """The Rust spelling of type ``t`` (struct/enum names get ``prefix``)."""
    if isinstance(t, str):
        return _RUST_SCALARS[t]
    if "vec" in t:
        return f"Vec<{rust_type(t['vec'], prefix)}>"
    if "option" in t:
        return f"Option<{rust_type(t['option'], prefix)}>"
    if "box" in t:
        return f"Box<{rust_type(t['box'], prefix)}>"
    if "array" in t:
        return f"[{rust_type(t['array'], prefix)}; {t['len']}]"
    if "tuple" in t:
        items = [rust_type(x, prefix) for x in t["tuple"]]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if "result" in t:
        return f"Result<{rust_type(t['result'][0], prefix)}, {rust_type(t['result'][1], prefix)}>"
    if "map" in t:
        return f"HashMap<{rust_type(t['map'][0], prefix)}, {rust_type(t['map'][1], prefix)}>"
    if "struct" in t:
        return prefix + t["struct"]
    if "enum" in t:
        return prefix + t["enum"]
    raise ValueError(t)


def _rust_defs(t: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(t, str):
        return
    for k in ("vec", "option", "box", "array"):
        if k in t:
            _rust_defs(t[k], prefix, out)
    for k in ("tuple", "result", "map"):
        if k in t:
            for x in t[k]:
                _rust_defs(x, prefix, out)
    derive = ("#[derive(Archive, Serialize, Deserialize)]\n"
              "#[archive_attr(derive(CheckBytes))]\n")
    if "struct" in t:
        for _, ft in t["fields"]:
            _rust_defs(ft, prefix, out)
        body = "".join(f"    {n}: {rust_type(ft, prefix)},\n" for n, ft in t["fields"])
        out[prefix + t["struct"]] = f"{derive}pub struct {prefix}{t['struct']} {{\n{body}}}\n"
    if "enum" in t:
        lines = []
        for n, b in t["variants"]:
            for _, ft in _variant_fields(b):
                _rust_defs(ft, prefix, out)
            if b is None:
                lines.append(f"    {n},\n")
            elif "tuple" in b:
                lines.append(f"    {n}(" + ", ".join(rust_type(x, prefix) for x in b["tuple"])
                             + "),\n")
            else:
                lines.append(f"    {n} {{ " + ", ".join(f"{fn}: {rust_type(ft, prefix)}"
                                                      for fn, ft in b["fields"]) + " },\n")
        out[prefix + t["enum"]] = f"{derive}pub enum {prefix}{t['enum']} {{\n{''.join(lines)}}}\n"


def _rust_str(s: str) -> str:
    out = []
    for ch in s:
        if ch.isascii() and (ch.isalnum() or ch in " _-.,:;"):
            out.append(ch)
        else:
            out.append(f"\\u{{{ord(ch):x}}}")
    return '"' + "".join(out) + '"'


def _rust_int(t: str, v: int) -> str:
    lo, _ = INTS[t]
    if v == lo and lo < 0 and t != "isize":  # isize::MIN is 64-bit on the host
        return f"{t}::MIN"
    return f"({v}{t})" if v < 0 else f"{v}{t}"


def rust_value(t: Any, v: Any, prefix: str = "") -> str:
    """A Rust expression for value ``v`` of type ``t``."""
    if isinstance(t, str):
        if t in INTS:
            return _rust_int(t, v)
        if t == "f32":
            return f"f32::from_bits({_f32_bits(v):#x}u32)"
        if t == "f64":
            return f"f64::from_bits({struct.unpack('<Q', struct.pack('<d', v))[0]:#x}u64)"
        if t == "bool":
            return "true" if v else "false"
        if t == "char":
            return f"'\\u{{{ord(v):x}}}'"
        if t == "string":
            return f"String::from({_rust_str(v)})"
        if t == "bytes":
            return "<Vec<u8>>::from([" + ", ".join(f"{b}u8" for b in v) + "])"
        return "()"
    rt = rust_type(t, prefix)
    if "vec" in t:
        return f"<{rt}>::from([" + ", ".join(rust_value(t["vec"], x, prefix) for x in v) + "])"
    if "option" in t:
        if v is None:
            return f"<{rt}>::None"
        inner = v.value if _some_form(t) else v
        return f"<{rt}>::Some({rust_value(t['option'], inner, prefix)})"
    if "box" in t:
        return f"Box::new({rust_value(t['box'], v, prefix)})"
    if "array" in t:
        items = ", ".join(rust_value(t["array"], x, prefix) for x in v)
        return f"{{ let a: {rt} = [{items}]; a }}"
    if "tuple" in t:
        items = [rust_value(x, y, prefix) for x, y in zip(t["tuple"], v, strict=True)]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if "result" in t:
        if isinstance(v, T.Ok):
            return f"<{rt}>::Ok({rust_value(t['result'][0], v.value, prefix)})"
        return f"<{rt}>::Err({rust_value(t['result'][1], v.error, prefix)})"
    if "map" in t:
        kt, vt = t["map"]
        ins = "".join(f" m.insert({rust_value(kt, k, prefix)}, {rust_value(vt, x, prefix)});"
                      for k, x in v.items())
        return f"{{ let mut m = <{rt}>::new();{ins} m }}"
    if "struct" in t:
        fs = ", ".join(f"{n}: {rust_value(ft, getattr(v, n), prefix)}" for n, ft in t["fields"])
        return f"{rt} {{ {fs} }}"
    if "enum" in t:
        i = _classes(t).index(v if isinstance(v, enum.Enum) else type(v))
        name, body = t["variants"][i]
        if body is None:
            return f"{rt}::{name}"
        if "tuple" in body:
            return f"{rt}::{name}(" + ", ".join(
                rust_value(ft, getattr(v, fn), prefix) for fn, ft in _variant_fields(body)) + ")"
        return f"{rt}::{name} {{ " + ", ".join(
            f"{fn}: {rust_value(ft, getattr(v, fn), prefix)}" for fn, ft in body["fields"]) + " }"
    raise ValueError(t)


_MAIN = r"""
use rkyv::ser::serializers::AllocSerializer;
use rkyv::de::deserializers::SharedDeserializeMap;
use rkyv::validation::validators::DefaultValidator;
use rkyv::{AlignedVec, Archive, Deserialize, Serialize};
use bytecheck::CheckBytes;
use std::collections::HashMap;
use std::io::{BufRead, Write};

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b { s.push_str(&format!("{:02x}", x)); }
    s
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn ser<T: Serialize<AllocSerializer<1024>>>(v: &T) -> String {
    match rkyv::to_bytes::<_, 1024>(v) {
        Ok(b) => hex(b.as_slice()),
        Err(e) => format!("error {:?}", e),
    }
}

fn chk<T>(b: &[u8]) -> String
where
    T: Archive + Serialize<AllocSerializer<1024>>,
    for<'a> T::Archived: CheckBytes<DefaultValidator<'a>> + Deserialize<T, SharedDeserializeMap>,
{
    // 16-aligned like every archive rkyv reads; the zeroed spare capacity makes
    // any read past the end deterministic.
    let mut buf = AlignedVec::with_capacity(b.len() + 512);
    buf.extend_from_slice(&vec![0u8; b.len() + 512]);
    buf.clear();
    buf.extend_from_slice(b);
    match rkyv::from_bytes::<T>(&buf) {
        Ok(v) => format!("ok {}", ser(&v)),
        Err(_) => "reject".to_string(),
    }
}

fn main() {
    std::panic::set_hook(Box::new(|_| {}));
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let mut it = line.split(' ');
        let cmd = it.next().unwrap_or("").to_string();
        let i: usize = it.next().unwrap_or("0").parse().unwrap_or(usize::MAX);
        let arg = it.next().unwrap_or("").to_string();
        let r = std::panic::catch_unwind(move || {
            if cmd == "S" { ser_case(i) } else { chk_case(i, &unhex(&arg)) }
        });
        let r = r.unwrap_or_else(|_| "panic".to_string());
        writeln!(out, "{}", r).unwrap();
    }
}
"""


def rust_program(cases: list[tuple[Any, Any]]) -> str:
    """The Rust source for ``cases`` of ``(type, value)``; case ``i`` answers
    ``S i`` with its archive and ``C i HEX`` with rkyv's verdict on HEX."""
    defs: dict[str, str] = {}
    items = []
    ser_arms = []
    chk_arms = []
    for i, (t, v) in enumerate(cases):
        prefix = f"C{i}"
        _rust_defs(t, prefix, defs)
        items.append(f"type T{i} = {rust_type(t, prefix)};\n"
                     f"fn v{i}() -> T{i} {{ {rust_value(t, v, prefix)} }}\n")
        ser_arms.append(f"        {i} => ser(&v{i}()),\n")
        chk_arms.append(f"        {i} => chk::<T{i}>(b),\n")
    return ("#![allow(non_camel_case_types, dead_code, unused_parens, clippy::all)]\n"
            + _MAIN + "".join(defs.values()) + "".join(items)
            + "fn ser_case(i: usize) -> String {\n    match i {\n" + "".join(ser_arms)
            + "        _ => \"nocase\".to_string(),\n    }\n}\n"
            + "fn chk_case(i: usize, b: &[u8]) -> String {\n    match i {\n" + "".join(chk_arms)
            + "        _ => \"nocase\".to_string(),\n    }\n}\n")


# ---------------------------------------------------------------- toolchain


@dataclass(frozen=True)
class Toolchain:
    """cargo and the directory of crate sources (Debian's ``librust-*-dev``)."""

    cargo: str
    registry: Path
    rkyv: str
    bytecheck: str


def _crate_version(registry: Path, name: str, major: str) -> str | None:
    found = []
    for p in registry.glob(f"{name}-{major}.*"):
        ver = p.name[len(name) + 1:]
        if (p / "Cargo.toml").is_file() and all(x.isdigit() for x in ver.split(".")):
            found.append(tuple(int(x) for x in ver.split(".")))
    return ".".join(map(str, max(found))) if found else None


def find_toolchain(registry: str | None = None) -> Toolchain | str:
    """The toolchain, or a sentence saying what is missing."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not os.access(cargo, os.X_OK):
        return "cargo is not installed"
    reg = Path(registry or os.environ.get("HARDLIGHT_ORACLE_REGISTRY", DEFAULT_REGISTRY))
    rkyv = _crate_version(reg, "rkyv", "0.7")
    bytecheck = _crate_version(reg, "bytecheck", "0.6")
    if rkyv is None or bytecheck is None:
        return (f"rkyv 0.7 / bytecheck 0.6 sources are not in {reg} "
                "(apt-get install librust-rkyv-dev librust-bytecheck-dev)")
    return Toolchain(cargo, reg, rkyv, bytecheck)


def default_cache_dir() -> Path:
    """``$HARDLIGHT_ORACLE_CACHE`` or ``~/.cache/hardlight-oracle``."""
    env = os.environ.get("HARDLIGHT_ORACLE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hardlight-oracle"


_CARGO_TOML = """[package]
name = "hl_oracle"
version = "0.1.0"
edition = "2021"

[dependencies]
rkyv = {{ version = "={rkyv}", features = ["validation"] }}
bytecheck = "={bytecheck}"

# Quick to build (the generated crate is rebuilt for every run); no debug
# assertions or overflow checks, so rkyv behaves as in a release build.
[profile.oracle]
inherits = "release"
opt-level = 0
debug = false
debug-assertions = false
overflow-checks = false
incremental = false
codegen-units = 16
"""


class BuildError(RuntimeError):
    """cargo failed to build the generated program."""


def build(tc: Toolchain, source: str, cache: Path, log: Callable[[str], None]) -> Path:
    """The binary of ``source``: from the cache, or built with cargo (offline)."""
    cache.mkdir(parents=True, exist_ok=True)
    toml = _CARGO_TOML.format(rkyv=tc.rkyv, bytecheck=tc.bytecheck)
    digest = hashlib.sha256((toml + str(tc.registry) + source).encode()).hexdigest()[:24]
    bins = cache / "bin"
    exe = bins / f"hl_oracle-{digest}"
    if exe.exists():
        return exe
    crate = cache / "crate"
    with open(cache / "lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if exe.exists():
            return exe
        (crate / "src").mkdir(parents=True, exist_ok=True)
        (crate / ".cargo").mkdir(exist_ok=True)
        _write_if_changed(crate / ".cargo" / "config.toml",
                          '[source.crates-io]\nreplace-with = "debian"\n\n'
                          f'[source.debian]\ndirectory = "{tc.registry}"\n\n'
                          '[net]\noffline = true\n')
        _write_if_changed(crate / "Cargo.toml", toml)
        (crate / "src" / "main.rs").write_text(source)
        cmd = [tc.cargo, "build", "--offline", "--profile", "oracle", "--quiet"]
        log(f"building {len(source) // 1024} KiB of generated Rust with cargo ...")
        proc = subprocess.run(cmd, cwd=crate, capture_output=True, text=True,
                              env={**os.environ, "CARGO_TARGET_DIR": str(cache / "target")})
        if proc.returncode != 0:
            raise BuildError(proc.stderr[-4000:])
        bins.mkdir(exist_ok=True)
        for old in sorted(bins.glob("hl_oracle-*"), key=lambda p: p.stat().st_mtime)[:-8]:
            with contextlib.suppress(OSError):
                old.unlink()
        tmp = exe.with_suffix(".tmp")
        shutil.copy2(cache / "target" / "oracle" / "hl_oracle", tmp)
        tmp.replace(exe)
    return exe


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def ask(exe: Path, requests: list[str], timeout: float = 900) -> list[str]:
    """Run the program on request lines; one answer line per request."""
    try:
        proc = subprocess.run([str(exe)], input="\n".join(requests) + "\n",
                              capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        answers = out.splitlines()
        return answers + [f"timeout after {timeout} s"] * (len(requests) - len(answers))
    answers = proc.stdout.splitlines()
    if len(answers) < len(requests):
        answers += [f"crashed (exit {proc.returncode})"] * (len(requests) - len(answers))
    return answers


# ---------------------------------------------------------------- checking


def mutations(raw: bytes, r: random.Random, n: int) -> list[bytes]:
    """``n`` damaged copies of an archive: bit flips, truncation, tag-like bytes,
    nudged pointers and lengths."""
    out: list[bytes] = []
    for _ in range(n):
        b = bytearray(raw)
        op = r.choice(["flip", "flip", "cut_end", "cut_start", "tag", "tag", "word", "grow"])
        if not b:
            op = "grow"
        if op == "flip":
            i = r.randrange(len(b))
            b[i] ^= 1 << r.randrange(8)
        elif op == "cut_end":
            del b[len(b) - r.randint(1, min(len(b), 8)):]
        elif op == "cut_start":
            del b[:r.randint(1, min(len(b), 8))]
        elif op == "tag":
            b[r.randrange(len(b))] = r.choice([0, 1, 2, 3, 4, 5, 0x7F, 0x80, 0xFE, 0xFF])
        elif op == "word" and len(b) >= 4:
            i = r.randrange(len(b) - 3) & ~3 if len(b) >= 8 else 0
            (w,) = struct.unpack_from("<i", b, i)
            w = max(-(2**31), min(2**31 - 1, w + r.choice([-16, -8, -4, -1, 1, 4, 8, 16])))
            struct.pack_into("<i", b, i, w)
        else:
            b[0:0] = bytes(r.choice([1, 2, 4, 8, 16]))
        out.append(bytes(b))
    return out


# rkyv reads an inline string's length byte (0..=127) without bounding it by the
# 7 inline bytes, so it reads past the string object (undefined behaviour in
# rkyv); we reject such lengths and count these apart from failures.
_INLINE_UB = "inline length"
# Our decoder caps vectors and maps of zero-sized elements (MAX_ZST_ELEMENTS);
# rkyv has no cap and would spend minutes deserializing four billion `()`s, so
# such damaged archives are not sent to rkyv and are counted apart.
_ZST_CAP = "zero-sized"


@dataclass
class Case:
    """One type with one value, and what was found for it."""

    index: int
    type: Any
    value: Any
    seed: int
    problems: list[str] = field(default_factory=list)
    ub_skips: int = 0
    zst_skips: int = 0
    compile_error: str | None = None
    ours: bytes | None = None
    rkyv: bytes | None = None
    mutated: list[bytes] = field(default_factory=list)
    shrunk: Case | None = None
    rkyv_rejects_own: bool = False


def _our_decode(tp: Any, data: bytes) -> tuple[str, Any]:
    """("ok", value) | ("reject", message) | ("crash", description)."""
    try:
        return "ok", codec_for(tp).decode(data)
    except DecodeError as e:
        if e.__cause__ is not None or e.__context__ is not None:
            return "crash", f"DecodeError wrapping {type(e.__context__).__name__}: {e}"
        return "reject", str(e)
    except Exception as e:
        return "crash", f"{type(e).__name__}: {e}"


def _prepare(case: Case, n_mut: int) -> None:
    try:
        tp = hint_for(case.type)
        case.ours = codec_for(tp).encode(case.value)
    except Exception as e:
        case.compile_error = f"{type(e).__name__}: {e}"


def _check(case: Case, answers: list[str], n_mut: int) -> None:
    """Judge a case from the program's answers (``S`` then ``C`` per mutation)."""
    if case.compile_error is not None:
        case.problems.append(f"our codec cannot handle the type/value: {case.compile_error}")
        return
    tp = hint_for(case.type)
    codec = codec_for(tp)
    first = answers[0]
    if not all(c in "0123456789abcdef" for c in first):
        case.problems.append(f"rkyv could not serialize: {first}")
        return
    rk = bytes.fromhex(first)
    case.rkyv = rk
    if case.ours != rk:
        case.problems.append(f"encode differs:\n      ours {case.ours.hex() if case.ours else ''}"
                             f"\n      rkyv {rk.hex()}")
    kind, got = _our_decode(tp, rk)
    own = answers[1]
    if own == "reject":
        # rkyv rejects its own archive (e.g. a HashMap<usize, _>: the index is
        # built from 8-byte usize hashes, validated with 4-byte archived ones).
        case.rkyv_rejects_own = True
        if kind != "reject":
            case.problems.append(f"rkyv rejects its own archive, our decoder: {kind} {got!r}")
    elif kind != "ok":
        case.problems.append(f"decode of rkyv's bytes: {kind}: {got}")
    elif not values_equal(got, case.value):
        case.problems.append(f"decode of rkyv's bytes gave {got!r}, expected {case.value!r}")
    for m, ans in zip(case.mutated, answers[2:], strict=True):
        kind, got = _our_decode(tp, m)
        if kind == "crash":
            case.problems.append(f"mutated {m.hex()}: our decoder raised {got}")
            continue
        if ans == "reject":
            if kind == "ok":
                case.problems.append(f"mutated {m.hex()}: rkyv rejects, we accept {got!r}")
            continue
        if not ans.startswith("ok "):
            case.problems.append(f"mutated {m.hex()}: rkyv answered {ans!r}")
            continue
        if kind == "reject":
            if _INLINE_UB in got:
                case.ub_skips += 1
            else:
                case.problems.append(f"mutated {m.hex()}: rkyv accepts, we reject: {got}")
            continue
        again = codec.encode(got)
        if again.hex() != ans[3:]:
            case.problems.append(f"mutated {m.hex()}: both accept, but re-encoded ours "
                                 f"{again.hex()} != rkyv {ans[3:]}")


def _run_cases(tc: Toolchain, cache: Path, cases: list[Case], n_mut: int,
               log: Callable[[str], None]) -> None:
    for c in cases:
        _prepare(c, n_mut)
    # Rust needs a value even when our codec failed; it still checks rkyv's side.
    src = rust_program([(c.type, c.value) for c in cases])
    exe = build(tc, src, cache, log)
    ser = ask(exe, [f"S {i}" for i in range(len(cases))])
    reqs: list[str] = []
    for i, (c, s) in enumerate(zip(cases, ser, strict=True)):
        if all(ch in "0123456789abcdef" for ch in s):
            r = random.Random(f"{c.seed}:{c.index}:mut")
            c.mutated = []
            for m in mutations(bytes.fromhex(s), r, n_mut):
                if c.compile_error is None:
                    kind, got = _our_decode(hint_for(c.type), m)
                    if kind == "reject" and _ZST_CAP in got:
                        c.zst_skips += 1
                        continue
                c.mutated.append(m)
            reqs += [f"C {i} {s}"] + [f"C {i} {m.hex()}" for m in c.mutated]
    chk = iter(ask(exe, reqs)) if reqs else iter(())
    for c, s in zip(cases, ser, strict=True):
        own = [next(chk)] if c.mutated or all(ch in "0123456789abcdef" for ch in s) else []
        _check(c, [s, *own] + [next(chk) for _ in c.mutated], n_mut)


# ---------------------------------------------------------------- shrinking


def _size(t: Any) -> int:
    return len(json.dumps(t))


def _simpler(t: Any) -> Iterator[Any]:
    """Types one step simpler than ``t`` (same position in the parent)."""
    if isinstance(t, str):
        if t != "u8":
            yield "u8"
        return
    yield "u8"
    for k in ("vec", "option", "box", "array"):
        if k in t:
            yield t[k]
            for s in _simpler(t[k]):
                yield {**t, k: s}
    if "array" in t and t["len"] > 1:
        yield {**t, "len": 1}
    if "option" in t and t.get("some") and not is_nullable(t["option"]):
        yield {"option": t["option"]}
    for k in ("tuple", "result", "map"):
        if k in t:
            xs = t[k]
            if k == "tuple" and len(xs) > 1:
                for i in range(len(xs)):
                    yield {k: xs[:i] + xs[i + 1:]}
            for i, x in enumerate(xs):
                yield x if k != "map" or i == 1 else {"vec": x}
                for s in _simpler(x):
                    if k == "map" and i == 0 and not _keyable(s):
                        continue
                    yield {k: [*xs[:i], s, *xs[i + 1:]]}
    if "struct" in t:
        fs = t["fields"]
        for i, (n, ft) in enumerate(fs):
            yield {**t, "fields": fs[:i] + fs[i + 1:]}
            yield ft
            for s in _simpler(ft):
                yield {**t, "fields": [*fs[:i], [n, s], *fs[i + 1:]]}
    if "enum" in t:
        vs = t["variants"]
        if len(vs) > 5:
            yield {**t, "variants": vs[:len(vs) // 2]}
        for i, (n, b) in enumerate(vs):
            if len(vs) > 1:
                yield {**t, "variants": vs[:i] + vs[i + 1:]}
            if b is not None:
                yield {**t, "variants": [*vs[:i], [n, None], *vs[i + 1:]]}
                key = "tuple" if "tuple" in b else "fields"
                items = b[key]
                for j, it in enumerate(items):
                    ft = it if key == "tuple" else it[1]
                    yield ft
                    for s in _simpler(ft):
                        new = s if key == "tuple" else [it[0], s]
                        nb = {key: [*items[:j], new, *items[j + 1:]]}
                        yield {**t, "variants": [*vs[:i], [n, nb], *vs[i + 1:]]}


def _keyable(t: Any) -> bool:
    if isinstance(t, str):
        return t not in ("f32", "f64")
    if "tuple" in t:
        return all(_keyable(x) for x in t["tuple"])
    for k in ("array", "vec", "box"):
        if k in t:
            return _keyable(t[k])
    return False


def _shrink(tc: Toolchain, cache: Path, failing: list[Case], n_mut: int,
            log: Callable[[str], None], rounds: int = 6, per_case: int = 60) -> None:
    """Replace each failing case's type by a smaller one that still fails."""
    best = {c.index: c for c in failing}
    for rnd in range(rounds):
        trials: list[tuple[int, Case]] = []
        for idx, c in best.items():
            seen: set[str] = set()
            cands = sorted({json.dumps(x, sort_keys=True): x for x in _simpler(c.type)}.values(),
                           key=_size)
            for cand in cands:
                key = json.dumps(cand, sort_keys=True)
                if key in seen or _size(cand) >= _size(c.type):
                    continue
                seen.add(key)
                if len(seen) > per_case:
                    break
                for v in range(2):
                    r = random.Random(f"{c.seed}:{idx}:shrink:{rnd}:{key}:{v}")
                    trials.append((idx, Case(len(trials), cand, gen_value(cand, r), c.seed)))
        if not trials:
            return
        log(f"shrinking: round {rnd + 1}, {len(trials)} candidates")
        cases = [c for _, c in trials]
        for n, c in enumerate(cases):
            c.index = n
        try:
            _run_cases(tc, cache, cases, n_mut, log)
        except BuildError as e:
            log(f"shrinking stopped: a candidate did not build: {str(e)[:500]}")
            return
        improved = False
        for idx, c in trials:
            if c.problems and _size(c.type) < _size(best[idx].type):
                best[idx] = c
                improved = True
        for c in failing:
            b = best[c.index]
            if b is not c:
                c.shrunk = b
        if not improved:
            return


# ---------------------------------------------------------------- driver


@dataclass
class OracleResult:
    """What one run found."""

    passed: int
    failed: int
    ub_skips: int
    zst_skips: int
    cases: list[Case]
    lines: list[str]


def run_oracle(n_types: int, seed: int, mutations_per_type: int = 8,
               cache: Path | None = None, toolchain: Toolchain | None = None,
               shrink: bool = True, log: Callable[[str], None] = lambda s: None,
               batch: int = 500) -> OracleResult:
    """Check ``n_types`` random types (seeded) against rkyv; see the module doc."""
    tc = toolchain
    if tc is None:
        found = find_toolchain()
        if isinstance(found, str):
            raise RuntimeError(found)
        tc = found
    cache = cache or default_cache_dir()
    rng = random.Random(seed)
    cases: list[Case] = []
    for i in range(n_types):
        t = gen_type(rng)
        cases.append(Case(i, t, gen_value(t, rng), seed))
    for lo in range(0, n_types, batch):
        _run_cases(tc, cache, cases[lo:lo + batch], mutations_per_type, log)
    failing = [c for c in cases if c.problems]
    if failing and shrink:
        _shrink(tc, cache, failing, mutations_per_type, log)
    lines: list[str] = []
    for c in failing:
        lines.append(f"FAIL seed {seed} type #{c.index}: {rust_type(c.type)}")
        lines += [f"    {p}" for p in c.problems[:5]]
        s = c.shrunk
        if s is not None:
            lines.append(f"  minimal failing type: {rust_type(s.type)}")
            lines.append(f"    type {json.dumps(s.type)}")
            lines.append(f"    value {json.dumps(value_to_json(s.type, s.value))}")
            lines += [f"    {p}" for p in s.problems[:3]]
    ub = sum(c.ub_skips for c in cases)
    zst = sum(c.zst_skips for c in cases)
    return OracleResult(n_types - len(failing), len(failing), ub, zst, cases, lines)
