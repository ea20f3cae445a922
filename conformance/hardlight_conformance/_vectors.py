"""rkyv vector files: JSON type notation -> Python type hints, JSON values <-> Python values.

The notation is described in ``data/vectors/README.md``. Types are built once per
distinct notation (structs with :func:`msgspec.defstruct`, data-carrying enums as
:class:`~hardlight_core._types.Variant` subclasses, unit-only enums as
:class:`enum.Enum`), so the codec's per-type cache is exercised as in real use.
Values are converted by walking the *Python* type hint, so the same converter
serves hand-declared types (``messages.json``, ``apps.json``) through
``named_types``.
"""

from __future__ import annotations

import enum
import json
import math
import struct
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Optional

import msgspec

from hardlight_core import DecodeError, decode, encode
from hardlight_core import _types as T

__all__ = [
    "check_vector_files",
    "default_vector_files",
    "from_json",
    "iter_cases",
    "load_cases",
    "type_from_notation",
    "values_equal",
    "vectors_dir",
]

_SCALARS: dict[str, Any] = {
    "u8": T.u8,
    "u16": T.u16,
    "u32": T.u32,
    "u64": T.u64,
    "u128": T.u128,
    "i8": T.i8,
    "i16": T.i16,
    "i32": T.i32,
    "i64": T.i64,
    "i128": T.i128,
    "usize": T.usize,
    "isize": T.isize,
    "f32": T.f32,
    "f64": T.f64,
    "bool": bool,
    "char": T.char,
    "string": str,
    "bytes": bytes,
    "unit": None,
}

_TYPE_CACHE: dict[str, Any] = {}


def vectors_dir() -> Path:
    """The packaged ``data/vectors`` directory."""
    return Path(str(resources.files("hardlight_conformance") / "data" / "vectors"))


def default_vector_files() -> list[Path]:
    """The public rkyv encoding and validation vector files."""
    d = vectors_dir()
    return [d / "rkyv-public.json", d / "rkyv-validation-public.json"]


def type_from_notation(t: Any) -> Any:
    """The Python type hint for a vector ``type`` (cached per distinct notation)."""
    key = json.dumps(t, sort_keys=True)
    tp = _TYPE_CACHE.get(key)
    if tp is None and key not in _TYPE_CACHE:
        tp = _TYPE_CACHE[key] = _build(t)
    return tp


def _fields(spec: list[list[Any]]) -> list[tuple[str, Any]]:
    return [(name, type_from_notation(ft)) for name, ft in spec]


def _build(t: Any) -> Any:
    if isinstance(t, str):
        if t not in _SCALARS:
            raise ValueError(f"unknown scalar type {t!r}")
        return _SCALARS[t]
    if "vec" in t:
        return list.__class_getitem__(type_from_notation(t["vec"]))
    if "option" in t:
        inner = t["option"]
        if inner == "unit" or (isinstance(inner, dict) and "option" in inner):
            # Optional[Optional[X]] flattens in Python: such a vector needs Option[...]
            # values (Some/None), which this notation does not carry
            raise ValueError(f"nested option {t!r}: not readable from this notation")
        return Optional[type_from_notation(inner)]  # noqa: UP045
    if "box" in t:
        box: Any = T.Box
        return box[type_from_notation(t["box"])]
    if "array" in t:
        return T.Array[type_from_notation(t["array"]), int(t["len"])]
    if "tuple" in t:
        items = tuple(type_from_notation(x) for x in t["tuple"])
        return tuple.__class_getitem__(items if items else ((),))
    if "result" in t:
        ok, err = t["result"]
        result: Any = T.Result
        return result[type_from_notation(ok), type_from_notation(err)]
    if "map" in t:
        k, v = t["map"]
        return dict.__class_getitem__((type_from_notation(k), type_from_notation(v)))
    if "struct" in t:
        return msgspec.defstruct(t["struct"], _fields(t["fields"]))
    if "enum" in t:
        variants = t["variants"]
        if all(body is None for _, body in variants):
            return enum.Enum(t["enum"], [(name, i) for i, (name, _) in enumerate(variants)])
        classes = []
        for name, body in variants:
            if body is None:
                fields: list[tuple[str, Any]] = []
            elif "tuple" in body:
                fields = [(f"f{i}", type_from_notation(x)) for i, x in enumerate(body["tuple"])]
            else:
                fields = _fields(body["fields"])
            classes.append(msgspec.defstruct(name, fields, bases=(T.Variant,), frozen=True))
        if len(classes) == 1:
            return classes[0]
        return typing.Union[tuple(classes)]  # noqa: UP007
    raise ValueError(f"unknown type notation {t!r}")


# ---------------------------------------------------------------- values


def _f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def _float(v: Any) -> float:
    return float(v)  # "nan", "inf", "-inf" parse too


def _field(obj: Mapping[str, Any], name: str) -> Any:
    if name in obj:
        return obj[name]
    if name.endswith("_") and name[:-1] in obj:  # Python `from_` for Rust `from`
        return obj[name[:-1]]
    raise KeyError(name)


def _struct_value(cls: Any, tp: Any, payload: Any, newtype: bool) -> Any:
    origin = typing.get_origin(tp)
    base = origin if origin is not None else tp
    hints = typing.get_type_hints(base, include_extras=True)
    params = getattr(base, "__parameters__", ())
    sub = dict(zip(params, typing.get_args(tp), strict=False)) if origin is not None else {}
    names = list(base.__struct_fields__)
    fts = [sub.get(hints[n], hints[n]) for n in names]
    if payload is None:
        payload = []
    if isinstance(payload, Mapping):
        vals = [
            from_json(ft, _field(payload, n), newtype) for n, ft in zip(names, fts, strict=True)
        ]
    elif newtype and len(names) == 1:
        vals = [from_json(fts[0], payload, newtype)]
    else:
        if len(payload) != len(names):
            raise ValueError(f"{base.__name__}: expected {len(names)} values, got {payload!r}")
        vals = [from_json(ft, x, newtype) for ft, x in zip(fts, payload, strict=True)]
    return cls(*vals)


def _variant_value(classes: list[Any], jv: Any, newtype: bool) -> Any:
    if isinstance(jv, str):
        name, payload = jv, None
    else:
        ((name, payload),) = jv.items()
    for c in classes:
        if c.__name__ == name:
            return _struct_value(c, c, payload, newtype)
    raise ValueError(f"unknown variant {name!r}")


def from_json(tp: Any, jv: Any, newtype: bool = False) -> Any:
    """Convert a vector JSON value to the Python value of type hint ``tp``.

    ``newtype``: a one-field variant's payload is the field's value itself (as in
    ``messages.json`` / ``apps.json``) rather than a one-item list.
    """
    if tp is None or tp is type(None):
        return None
    if typing.get_origin(tp) is Annotated:
        base, *meta = typing.get_args(tp)
        m = meta[-1]
        if isinstance(m, T.Int):
            return int(jv)
        if isinstance(m, T.Float):
            return _f32(_float(jv)) if m.bits == 32 else _float(jv)
        if isinstance(m, T.CharMarker):
            return str(jv)
        inner = Annotated[(base, *meta[:-1])] if len(meta) > 1 else base
        if isinstance(m, T.BoxMarker):
            return from_json(inner, jv, newtype)
        if isinstance(m, T.ArrayLen):
            (elem, _) = typing.get_args(base)
            return tuple(from_json(elem, x, newtype) for x in jv)
        return from_json(inner, jv, newtype)
    if tp is bool:
        return bool(jv)
    if tp is float:
        return _float(jv)
    if tp is str:
        return str(jv)
    if tp is bytes:
        return bytes.fromhex(jv)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list:
        return [from_json(args[0], x, newtype) for x in jv]
    if origin is tuple:
        if args == ((),):
            args = ()
        return tuple(from_json(a, x, newtype) for a, x in zip(args, jv or [], strict=True))
    if origin is dict:
        kt, vt = args
        pairs = jv.items() if isinstance(jv, Mapping) else jv
        out = {}
        for k, x in pairs:
            if isinstance(jv, Mapping) and kt is not str:
                k = json.loads(k)
            out[from_json(kt, k, newtype)] = from_json(vt, x, newtype)
        return out
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != len(args):
            if jv is None:
                return None
            inner = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
            return from_json(inner, jv, newtype)
        if len(rest) == 2 and typing.get_origin(rest[0]) is T.Ok:
            ((tag, payload),) = jv.items()
            if tag == "Ok":
                return T.Ok(from_json(typing.get_args(rest[0])[0], payload, newtype))
            return T.Err(from_json(typing.get_args(rest[1])[0], payload, newtype))
        return _variant_value(list(rest), jv, newtype)
    cls = origin if origin is not None else tp
    if isinstance(cls, type):
        if issubclass(cls, T.Variant):
            return _variant_value([cls], jv, newtype)
        if issubclass(cls, enum.Enum):
            name = jv if isinstance(jv, str) else next(iter(jv))
            return cls[name]
        if issubclass(cls, msgspec.Struct):
            return _struct_value(cls, tp, jv, newtype)
    raise ValueError(f"cannot convert JSON to {tp!r}")


def values_equal(a: Any, b: Any) -> bool:
    """Deep equality where NaN equals NaN and types must match."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, msgspec.Struct):
        return type(a) is type(b) and values_equal(
            msgspec.structs.astuple(a), msgspec.structs.astuple(b)
        )
    if isinstance(a, (list, tuple)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(values_equal(a[k], b[k]) for k in a)
        )
    return type(a) is type(b) and bool(a == b)


# ---------------------------------------------------------------- running cases


def load_cases(path: str | Path) -> Any:
    """The parsed JSON of a vector file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def iter_cases(doc: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every case in a vector document: ``(name, case)``; lists and nested app files alike."""
    if isinstance(doc, list):
        for i, c in enumerate(doc):
            if isinstance(c, dict) and "type" in c and ("hex" in c or "rkyv" in c):
                yield c.get("name") or f"{where}[{i}]", c
            else:
                yield from iter_cases(c, f"{where}[{i}]")
    elif isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(v, (list, dict)):
                yield from iter_cases(v, f"{where}.{k}" if where else k)


def _check_case(
    name: str, case: dict[str, Any], named: Mapping[str, Any] | None
) -> tuple[bool, str] | None:
    t = case["type"]
    newtype = False
    if isinstance(t, str) and t not in _SCALARS:
        if named is None or t not in named:
            return None  # a named type nobody declared: skipped
        tp = named[t]
        newtype = True
    elif isinstance(t, str) and named is not None and t in named:
        tp = named[t]
    else:
        tp = type_from_notation(t)
    if "expect" in case:
        data = bytes.fromhex(case["hex"])
        try:
            value = decode(data, tp)
        except DecodeError as e:
            if case["expect"] == "reject":
                return True, ""
            return False, f"{name}: rejected ({e}), rkyv accepted"
        except Exception as e:
            return False, f"{name}: decode raised {type(e).__name__}: {e}"
        if case["expect"] == "reject":
            return False, f"{name}: accepted as {value!r}, rkyv rejects"
        got = encode(value, tp).hex()
        if got != case["expect"]:
            return False, f"{name}: re-encoded {got}, expected {case['expect']}"
        return True, ""
    hexs = case["hex"] if "hex" in case else case["rkyv"]
    try:
        value = from_json(tp, case["value"], newtype)
        got = encode(value, tp).hex()
        if got != hexs:
            return False, f"{name}: encoded {got}, expected {hexs}"
        back = decode(bytes.fromhex(hexs), tp)
    except Exception as e:
        return False, f"{name}: {type(e).__name__}: {e}"
    if not values_equal(back, value):
        return False, f"{name}: decoded {back!r}, expected {value!r}"
    return True, ""


def check_vector_files(
    paths: Iterable[str | Path], named_types: Mapping[str, Any] | None = None
) -> tuple[int, int, list[str]]:
    """Run every encoding and validation case of the files: ``(passed, failed, failure lines)``.

    A case whose ``type`` is a name (``messages.json``, ``apps.json``) runs only if
    ``named_types`` maps that name to a type hint; otherwise it is skipped.
    """
    passed = failed = 0
    lines: list[str] = []
    for path in paths:
        try:
            doc = load_cases(path)
        except (OSError, ValueError) as e:
            failed += 1
            lines.append(f"{path}: cannot read: {e}")
            continue
        for name, case in iter_cases(doc):
            try:
                res = _check_case(name, case, named_types)
            except Exception as e:
                res = (False, f"{name}: {type(e).__name__}: {e}")
            if res is None:
                continue
            if res[0]:
                passed += 1
            else:
                failed += 1
                lines.append(f"{Path(path).name}: {res[1]}")
    return passed, failed, lines
