"""A JSON description of a service, made from its Python declarations.

``python -m hardlight schema package.module:Service`` writes it; clients in other
languages (``clients/js``) read it to encode calls and decode results, events and
state. The description is structural: every type is spelled out in the notation
the rkyv vector files use, so a codec that passes the vectors can read any schema.

Schema (``"schema": 1``)::

    {
      "schema": 1,
      "protocol": "hl/2",
      "service": "Counter",
      "module": "hardlight_apps.counter",
      "methods": [                       # wire order: "tag" is the RpcCall variant
        {"name": "increment", "tag": 1, "variant": "Increment",
         "args": [{"name": "amount", "type": "u32"}], "returns": "unit"}, ...],
      "state": {"name": "CounterState", "fields": [   # or null without a State
        {"index": 0, "name": "counter", "type": "u32", "default": "00000000"}, ...]},
      "event": {"ref": "CounterEvent"},  # or null when no event type is known
      "types": {"CounterEvent": {...}, "Topic": {...}}
    }

Type notation (as in ``rkyv-public.json``, plus references):

* scalars: ``"u8" "u16" "u32" "u64" "u128" "i8" .. "i128" "usize" "isize" "f32"
  "f64" "bool" "char" "string" "bytes" "unit"``;
* ``{"vec": T}``, ``{"option": T}``, ``{"box": T}``, ``{"array": T, "len": N}``,
  ``{"tuple": [T, ...]}``, ``{"result": [T, E]}``, ``{"map": [K, V]}``;
* ``{"ref": "Name"}``: a struct or enum defined in ``types`` (so recursive types work);
* a struct: ``{"struct": "Name", "fields": [["field", T], ...]}`` (declaration order;
  the archived layout is rustc's reordering of it, which readers compute);
* an enum: ``{"enum": "Name", "variants": [["Variant", BODY, tag], ...]}`` where BODY
  is ``null`` (unit variant) or ``{"fields": [["field", T], ...]}``, and ``tag`` is the
  variant's position (u8 tag up to 255 variants, u16 beyond).

Field names are the Rust ones: a Python name that only carries a trailing underscore
to dodge a keyword (``from_``) is written without it (``from``). ``default`` is the
rkyv archive (hex) of the field's value in a freshly made state, which is where both
sides start.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import inspect
import json
import keyword
import sys
import types
import typing
from typing import Annotated, Any

import msgspec

from hardlight_core import Handler, Service, ServiceSpec, Variant, codec_for, encode
from hardlight_core._codec import _struct_hints  # the codec's own reading of a struct
from hardlight_core._types import ArrayLen, BoxMarker, CharMarker, Err, Float, Int, Ok, Some

__all__ = [
    "SCHEMA_VERSION",
    "build_schema",
    "load_target",
    "rust_name",
    "schema_json",
    "typescript",
]

SCHEMA_VERSION = 1
PROTOCOL = "hl/2"

JSON = Any  # a JSON-able value (dict / list / str / int / None)


def rust_name(name: str) -> str:
    """The Rust spelling of a Python field name: ``from_`` -> ``from``."""
    if name.endswith("_") and not name.endswith("__"):
        base = name[:-1]
        if keyword.iskeyword(base) or keyword.issoftkeyword(base):
            return base
    return name


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _alias_name(union: Any, variants: list[Any]) -> str | None:
    """The module-level name bound to a union of variants (``Pet = Dog | Cat``), if any."""
    args = typing.get_args(union)
    modules = []
    for v in variants:
        mod = sys.modules.get(getattr(v, "__module__", ""))
        if mod is not None and mod not in modules:
            modules.append(mod)
    for mod in modules:
        for name, value in vars(mod).items():
            if name.startswith("_") or not _is_union(value):
                continue
            if typing.get_args(value) == args:
                return name
    return None


class SchemaBuilder:
    """Turns type hints into the schema's type notation, collecting named types."""

    def __init__(self) -> None:
        self.types: dict[str, JSON] = {}
        self._named: dict[Any, str] = {}

    # -- naming ---------------------------------------------------------------------------

    def _claim(self, key: Any, name: str) -> tuple[str, bool]:
        """A unique name for ``key``; True if it was defined already."""
        try:
            existing = self._named.get(key)
        except TypeError:
            existing = None
        if existing is not None:
            return existing, True
        unique = name
        n = 2
        while unique in self.types:
            unique = f"{name}_{n}"
            n += 1
        self.types[unique] = None  # placeholder: recursive references find the name
        with contextlib.suppress(TypeError):
            self._named[key] = unique
        return unique, False

    # -- conversion -----------------------------------------------------------------------

    def type_of(self, tp: Any, name_hint: str | None = None) -> JSON:
        """The notation for the type hint ``tp``."""
        if tp is None or tp is type(None):
            return "unit"
        if typing.get_origin(tp) is Annotated:
            base, *meta = typing.get_args(tp)
            node: JSON = None
            for m in meta:
                if isinstance(m, (Int, Float)):
                    node = m.name
                elif isinstance(m, CharMarker):
                    node = "char"
                elif isinstance(m, BoxMarker):
                    node = {"box": node if node is not None else self.type_of(base)}
                elif isinstance(m, ArrayLen):
                    (elem, _) = typing.get_args(base)
                    node = {"array": self.type_of(elem), "len": m.n}
            return node if node is not None else self.type_of(base, name_hint)
        if tp is bool:
            return "bool"
        if tp is int:
            raise TypeError("plain int has no Rust width: annotate with u8 .. u128, i8 .. i128")
        if tp is float:
            return "f64"
        if tp is str:
            return "string"
        if tp is bytes:
            return "bytes"
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is list:
            return {"vec": self.type_of(args[0])}
        if origin is dict:
            return {"map": [self.type_of(args[0]), self.type_of(args[1])]}
        if origin is tuple or tp is tuple:
            if args == ((),):
                args = ()
            return {"tuple": [self.type_of(a) for a in args]}
        if _is_union(tp):
            rest = [a for a in args if a is not type(None)]
            optional = len(rest) != len(args)
            inner: JSON
            if (
                len(rest) == 2
                and typing.get_origin(rest[0]) is Ok
                and typing.get_origin(rest[1]) is Err
            ):
                inner = {
                    "result": [
                        self.type_of(typing.get_args(rest[0])[0]),
                        self.type_of(typing.get_args(rest[1])[0]),
                    ]
                }
            elif len(rest) == 1 and typing.get_origin(rest[0]) is Some:
                # Option[T] = Some[T] | None: the nestable spelling of Option<T>
                inner = self.type_of(typing.get_args(rest[0])[0])
            elif len(rest) == 1:
                inner = self.type_of(rest[0], name_hint)
            elif all(isinstance(a, type) and issubclass(a, Variant) for a in rest):
                union: Any = typing.Union[tuple(rest)]  # noqa: UP007
                inner = self._variant_enum(rest, name_hint or _alias_name(union, rest))
            else:
                raise TypeError(f"unsupported union {tp!r}")
            return {"option": inner} if optional else inner
        cls = origin if origin is not None else tp
        if isinstance(cls, type):
            if issubclass(cls, Variant):
                return self._variant_enum([tp], name_hint)
            if issubclass(cls, msgspec.Struct):
                return self._struct(tp)
            if issubclass(cls, enum.Enum):
                return self._unit_enum(cls)
        raise TypeError(f"{tp!r} is not a supported rkyv type")

    def _fields(self, names: list[str], hints: list[Any]) -> list[list[JSON]]:
        return [[rust_name(n), self.type_of(h)] for n, h in zip(names, hints, strict=True)]

    def _struct(self, tp: Any) -> JSON:
        cls, names, hints = _struct_hints(tp)
        base = cls.__name__
        if typing.get_origin(tp) is not None:
            base += "_" + "_".join(_plain_name(a) for a in typing.get_args(tp))
        name, done = self._claim(tp, base)
        if not done:
            self.types[name] = {"struct": name, "fields": self._fields(names, hints)}
        return {"ref": name}

    def _unit_enum(self, cls: type[enum.Enum]) -> JSON:
        name, done = self._claim(cls, cls.__name__)
        if not done:
            self.types[name] = {
                "enum": name,
                "variants": [[m.name, None, i] for i, m in enumerate(cls)],
            }
        return {"ref": name}

    def _variant_enum(self, variants: list[Any], name_hint: str | None) -> JSON:
        key = tuple(variants)
        base = name_hint or "Or".join(getattr(v, "__name__", "V") for v in variants)
        name, done = self._claim(key, base)
        if not done:
            out = []
            for tag, v in enumerate(variants):
                cls, names, hints = _struct_hints(v)
                body = {"fields": self._fields(names, hints)} if names else None
                out.append([cls.__name__, body, tag])
            self.types[name] = {"enum": name, "variants": out}
        return {"ref": name}


def _plain_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace(" ", "")


def _find_handlers(service: type[Any]) -> list[type[Any]]:
    mod = sys.modules.get(service.__module__)
    found = []
    if mod is not None:
        for value in vars(mod).values():
            if (
                isinstance(value, type)
                and issubclass(value, service)
                and issubclass(value, Handler)
                and getattr(value, "Event", None) is not None
            ):
                found.append(value)
    return found


def _event_from(target: type[Any], service: type[Any]) -> Any:
    """The event type: the handler's ``Event`` (given a handler, or the module's only one)."""
    if issubclass(target, Handler) and getattr(target, "Event", None) is not None:
        return target.Event
    handlers = _find_handlers(service)
    events = {id(h.Event): h.Event for h in handlers}
    if len(events) == 1:
        return next(iter(events.values()))
    return None


def build_schema(target: type[Any], event: Any = None, event_name: str | None = None) -> JSON:
    """The schema of a service (or of the service a handler class implements).

    ``event`` overrides the event type (by default the handler's ``Event``: that of
    ``target`` if it is a handler, else of the one handler in the service's module).
    """
    spec = ServiceSpec.of(target)
    service = spec.service
    if not (isinstance(service, type) and issubclass(service, Service)):
        raise TypeError(f"{target!r} is not a service")
    builder = SchemaBuilder()
    methods = []
    for m in spec.methods:
        methods.append(
            {
                "name": m.name,
                "tag": m.tag,
                "variant": m.variant.__name__,
                "args": [
                    {"name": n, "type": builder.type_of(t)}
                    for n, t in zip(m.arg_names, m.arg_types, strict=True)
                ],
                "returns": builder.type_of(m.return_type),
            }
        )
    state: JSON = None
    state_type = spec.state_type
    if state_type is not None:
        _cls, names, hints = _struct_hints(state_type)
        try:
            default = state_type()
        except TypeError as exc:
            raise TypeError(f"state {state_type.__name__}: every field needs a default") from exc
        fields = []
        for index, (n, h) in enumerate(zip(names, hints, strict=True)):
            fields.append(
                {
                    "index": index,
                    "name": rust_name(n),
                    "type": builder.type_of(h),
                    "default": encode(getattr(default, n), h).hex(),
                }
            )
        state = {"name": state_type.__name__, "fields": fields}
    if event is None:
        event = _event_from(target, service)
    event_notation: JSON = None
    if event is not None:
        codec_for(event)  # refuse what the codec refuses
        if event_name is None and _is_union(event):
            variants = list(typing.get_args(event))
            event_name = _alias_name(event, variants) or f"{service.__name__}Event"
        event_notation = builder.type_of(event, event_name)
    return {
        "schema": SCHEMA_VERSION,
        "protocol": PROTOCOL,
        "service": service.__name__,
        "module": service.__module__,
        "methods": methods,
        "state": state,
        "event": event_notation,
        "types": builder.types,
    }


def schema_json(schema: JSON) -> str:
    """The schema as stable, readable JSON text (ends with a newline)."""
    return json.dumps(schema, indent=1) + "\n"


def load_target(spec: str) -> Any:
    """Import ``package.module:Attribute`` (dots allowed after the colon)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected package.module:Name, got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------- TypeScript

_TS_SCALARS = {
    "u8": "number", "u16": "number", "u32": "number", "usize": "number",
    "i8": "number", "i16": "number", "i32": "number", "isize": "number",
    "u64": "bigint", "i64": "bigint", "u128": "bigint", "i128": "bigint",
    "f32": "number", "f64": "number", "bool": "boolean", "char": "string",
    "string": "string", "bytes": "Uint8Array", "unit": "null",
}


def _ts_ident(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out and not out[0].isdigit() else "_" + out


def _ts_key(name: str) -> str:
    return name if name.isidentifier() else json.dumps(name)


def _ts_type(t: JSON) -> str:
    if isinstance(t, str):
        return _TS_SCALARS[t]
    if "ref" in t:
        return _ts_ident(t["ref"])
    if "vec" in t:
        return f"Array<{_ts_type(t['vec'])}>"
    if "option" in t:
        return f"{_ts_type(t['option'])} | null"
    if "box" in t:
        return _ts_type(t["box"])
    if "array" in t:
        return "[" + ", ".join([_ts_type(t["array"])] * int(t["len"])) + "]"
    if "tuple" in t:
        return "[" + ", ".join(_ts_type(x) for x in t["tuple"]) + "]"
    if "result" in t:
        ok, err = t["result"]
        return f"{{ Ok: {_ts_type(ok)} }} | {{ Err: {_ts_type(err)} }}"
    if "map" in t:
        k, v = t["map"]
        return f"Map<{_ts_type(k)}, {_ts_type(v)}>"
    if "struct" in t:
        return _ts_struct(t["fields"])
    if "enum" in t:
        return _ts_enum(t["variants"])
    raise ValueError(f"unknown type notation {t!r}")


def _ts_struct(fields: list[list[JSON]]) -> str:
    if not fields:
        return "Record<string, never>"
    return "{ " + " ".join(f"{_ts_key(n)}: {_ts_type(ft)};" for n, ft in fields) + " }"


def _ts_enum(variants: list[list[JSON]]) -> str:
    if all(v[1] is None for v in variants):
        return " | ".join(json.dumps(v[0]) for v in variants)
    parts = []
    for v in variants:
        body = v[1]
        if body is None:
            payload = "null"
        elif "tuple" in body:
            payload = "[" + ", ".join(_ts_type(x) for x in body["tuple"]) + "]"
        else:
            payload = _ts_struct(body["fields"])
        parts.append(f"{{ {_ts_key(v[0])}: {payload} }}")
    return "\n  | ".join(parts)


def typescript(schema: JSON) -> str:
    """TypeScript declarations for a schema's values, calls, state and events.

    Gives ``<Service>Rpc`` (one method per call), ``<Service>State``,
    ``<Service>Event`` and ``<Service>Types`` for ``Client<<Service>Types>`` of the
    JS client (``clients/js``).
    """
    svc = _ts_ident(schema["service"])
    lines = [
        f"// Generated by `python -m hardlight schema` from {schema['module']}:"
        f"{schema['service']}. Do not edit.",
        "",
    ]
    for name, t in schema["types"].items():
        if "struct" in t:
            lines.append(f"export interface {_ts_ident(name)} {_ts_struct(t['fields'])}")
        else:
            lines.append(f"export type {_ts_ident(name)} =\n  | {_ts_enum(t['variants'])};")
    lines.append("")
    lines.append(f"export interface {svc}Rpc {{")
    for m in schema["methods"]:
        args = ", ".join(f"{_ts_ident(a['name'])}: {_ts_type(a['type'])}" for a in m["args"])
        lines.append(f"  {_ts_key(m['name'])}({args}): Promise<{_ts_type(m['returns'])}>;")
    lines.append("}")
    state = schema["state"]
    if state is None:
        lines.append(f"export type {svc}State = null;")
    else:
        lines.append(f"export interface {svc}State {{")
        for f in state["fields"]:
            lines.append(f"  {_ts_key(f['name'])}: {_ts_type(f['type'])};")
        lines.append("}")
    event = schema["event"]
    event_ts = _ts_type(event) if event is not None else "never"
    if event_ts != f"{svc}Event":  # else the enum itself has that name
        lines.append(f"export type {svc}Event = {event_ts};")
    lines.append(
        f"export interface {svc}Types {{ rpc: {svc}Rpc; state: {svc}State; event: {svc}Event }}"
    )
    return "\n".join(lines) + "\n"


def resolve_service(target: Any) -> type[Any]:
    """Check that ``target`` is a Service or Handler class."""
    if not inspect.isclass(target):
        raise TypeError(f"{target!r} is not a class")
    ServiceSpec.of(target)
    return typing.cast(type[Any], target)
