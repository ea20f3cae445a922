"""Service declarations (the reference's ``#[rpc]`` trait) and server-side handlers.

A service is a class of annotated ``async def`` methods deriving from
:class:`Service`; declaration order is the ``RpcCall`` tag, the arguments are
the variant's fields and the return annotation the ``Ok`` payload::

    class Counter(Service):
        State = CounterState              # optional: the connection state clients mirror

        async def new_counter(self) -> None: ...
        async def increment(self, amount: u32) -> None: ...
        async def get(self) -> u32: ...

A handler implements it and derives from :class:`Handler`, which gives it what
the reference gives a handler: ``self.state``, ``self.subscribe(topic)``,
``self.unsubscribe(topic)`` and ``self.emit(topic, event)``::

    class CounterHandler(Counter, Handler):
        Event = CounterEvent

        async def get(self) -> u32:
            return self.state.counter

Both are checked when their class is defined: a type that is not a Rust type
(plain ``int``), a name the client's own API uses, a plain ``def`` in a declaration,
a handler method missing, not ``async def`` or with other parameters raise
:class:`~hardlight_core.ServiceDefinitionError` there, naming the class, method and
parameter.

Raise an :class:`~hardlight_core.RpcError` subclass to answer that error; any
other exception answers ``HandlerPanicked`` (no text reaches the client) and is
logged. Application errors are values: declare ``-> Result[T, E]`` and return
``Err(e)`` or raise ``AppError(e)``; the client's ``result.unwrap()`` raises
``AppError(e)`` (``docs/errors.md``).
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from ._codec import Codec, codec_for, encode, tuples_rkyv_rejects
from ._config import HandshakeInfo
from ._envelope import TopicLike, as_topic
from ._errors import AppError, EncodeError, RpcError, RpcHandlerError, ServiceDefinitionError
from ._types import ArrayLen, BoxMarker, CharMarker, Err, Float, Int, Ok, Variant

__all__ = [
    "CLIENT_RESERVED_NAMES",
    "Handler",
    "MethodSpec",
    "Service",
    "ServiceSpec",
    "outcome_to_output",
]

log = logging.getLogger("hardlight")

#: Names of the clients' own API (``hardlight_asyncio``, ``hardlight_anyio`` and
#: ``hardlight_threads`` ``Client``): a service method so named could not be called as
#: ``client.name(...)``, so declaring one is refused. Names starting with ``_`` are
#: refused too (the clients' internals).
CLIENT_RESERVED_NAMES: frozenset[str] = frozenset(
    {
        "call",
        "config",
        "connect",
        "connected",
        "disconnect",
        "events_dropped",
        "on_reconnect",
        "proxy",
        "service",
        "spec",
        "state",
        "subscribe",
        "tls_transport",
    }
)

#: Parameter names a method may not use: every client method takes ``timeout=``.
RESERVED_PARAMETER_NAMES: frozenset[str] = frozenset({"timeout"})

_INT_WIDTHS = "u8/u16/u32/u64/u128/i8/i16/i32/i64/i128/usize/isize"


class Service:
    """Base class of service declarations: subclass it and declare ``async def`` methods.

    The declaration is checked when the class is defined (types, names, plain ``def``
    methods): a mistake raises :class:`~hardlight_core.ServiceDefinitionError` there.
    """

    State: ClassVar[Any] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if Service in cls.__bases__:
            ServiceSpec._define(cls)


@dataclass(frozen=True)
class MethodSpec:
    """One RPC method: its tag, arguments and the codecs of its call and result.

    ``error_type`` is ``E`` when the method returns ``Result[T, E]`` (else None);
    ``signature`` is the declaration's, without ``self`` (how a client binds keywords
    and defaults to the wire's positional arguments).
    """

    name: str
    tag: int
    arg_names: tuple[str, ...]
    arg_types: tuple[Any, ...]
    return_type: Any
    variant: type[Any]
    result_codec: Codec
    error_type: Any = None
    signature: inspect.Signature = field(default_factory=inspect.Signature)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The positional arguments (the wire's order) for a call with ``args`` and
        ``kwargs``, defaults filled in; EncodeError if they do not fit the declaration."""
        if not kwargs and len(args) == len(self.arg_names):
            return args
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise EncodeError(f"{self.name}(): {exc}") from None
        bound.apply_defaults()
        return tuple(bound.arguments[name] for name in self.arg_names)


class _Unresolved(ServiceDefinitionError):
    """An annotation names something not defined yet: checked again when a server or
    client is built (:meth:`ServiceSpec.of`)."""


class ServiceSpec:
    """Everything derived from a service class, computed once per class."""

    _cache: ClassVar[dict[type[Any], ServiceSpec]] = {}
    _checked_handlers: ClassVar[set[type[Any]]] = set()

    def __init__(self, service: type[Any]) -> None:
        self.service = service
        methods: list[MethodSpec] = []
        for name, func in service.__dict__.items():
            if _declared_method(service, name, func):
                methods.append(_method_spec(service, name, func, len(methods)))
        if not methods:
            raise ServiceDefinitionError(f"service {service.__name__} declares no async methods")
        if len(methods) > 65535:
            raise ServiceDefinitionError("a service may declare at most 65535 methods")
        self.methods: tuple[MethodSpec, ...] = tuple(methods)
        self._by_name = {m.name: m for m in methods}
        self._by_variant = {m.variant: m for m in methods}
        variants = tuple(m.variant for m in methods)
        self.call_type: Any = variants[0] if len(variants) == 1 else typing.Union[variants]  # noqa: UP007
        self.call_codec = codec_for(self.call_type)
        self.state_type: Any = getattr(service, "State", None)
        # calls without arguments archive to constant bytes: encode and recognise them once
        self._constant_calls: dict[str, bytes] = {}
        self._by_constant: dict[bytes, MethodSpec] = {}
        for m in methods:
            if not m.arg_names:
                archived = self.call_codec.encode(m.variant())
                self._constant_calls[m.name] = archived
                self._by_constant[archived] = m

    @classmethod
    def _define(cls, service: type[Any]) -> None:
        """Check a declaration as its class is defined (annotations naming something not
        defined yet are checked again by :meth:`of`)."""
        with contextlib.suppress(_Unresolved):
            cls._cache[service] = cls(service)

    @classmethod
    def of(cls, service_or_handler: type[Any]) -> ServiceSpec:
        """The spec of a service class (or of the service a handler class implements).

        A handler class is checked against its service here if it was not when it was
        defined (ServiceDefinitionError).
        """
        service = _find_service(service_or_handler)
        spec = cls._cache.get(service)
        if spec is None:
            spec = cls._cache[service] = cls(service)
        if (
            service_or_handler is not service
            and service_or_handler not in cls._checked_handlers
            and issubclass(service_or_handler, Handler)
        ):
            if service_or_handler.__dict__.get("_hl_checked", True):
                _check_handler(service_or_handler, spec)
            cls._checked_handlers.add(service_or_handler)
        return spec

    def method(self, name: str) -> MethodSpec:
        """The method called ``name`` (AttributeError-like LookupError if none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise LookupError(f"{self.service.__name__} has no method {name!r}") from None

    def bind_args(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, ...]:
        """Client side: ``name(*args, **kwargs)`` as the wire's positional arguments
        (keywords mapped to their position, defaults filled in)."""
        return self.method(name).bind(args, kwargs)

    def encode_call(self, name: str, *args: Any, **kwargs: Any) -> bytes:
        """Client side: the archived ``RpcCall`` for ``name(*args, **kwargs)``."""
        if not args and not kwargs:
            constant = self._constant_calls.get(name)
            if constant is not None:
                return constant
        method = self.method(name)
        if kwargs or len(args) != len(method.arg_names):
            args = method.bind(args, kwargs)
        return self.call_codec.encode(method.variant(*args))

    def decode_call(self, internal: bytes) -> tuple[MethodSpec, tuple[Any, ...]]:
        """Server side: which method, with which arguments (DecodeError if not a call)."""
        constant = self._by_constant.get(internal)
        if constant is not None:
            return constant, ()
        value = self.call_codec.decode(internal)
        method = self._by_variant[type(value)]
        return method, tuple(getattr(value, a) for a in method.arg_names)

    def encode_return(self, name: str, value: Any) -> bytes:
        """Server side: archive a method's return value."""
        return self.method(name).result_codec.encode(value)

    def decode_return(self, name: str, data: bytes) -> Any:
        """Client side: decode a method's result."""
        return self.method(name).result_codec.decode(data)


def _find_service(cls: type[Any]) -> type[Any]:
    for klass in cls.__mro__:
        if Service in klass.__bases__:
            return klass
    raise ServiceDefinitionError(
        f"{cls.__name__} is not a Service (derive the declaration from Service)"
    )


# -- checking declarations -------------------------------------------------------------------


def _declared_method(service: type[Any], name: str, obj: Any) -> bool:
    """Whether ``name`` in a declaration's body is an RPC method; refuses what is neither
    an RPC method nor clearly a helper."""
    if not inspect.isfunction(obj):
        return False  # attributes, State, staticmethods, properties: not methods
    where = f"{service.__name__}.{name}"
    is_async = inspect.iscoroutinefunction(inspect.unwrap(obj))
    if name.startswith("_"):
        if is_async and not (name.startswith("__") and name.endswith("__")):
            raise ServiceDefinitionError(
                f"{where}: an RPC method's name may not start with '_' (the client's own "
                f"attributes do); rename it (only the declaration order reaches the wire), "
                f"or move the helper to the handler"
            )
        return False
    if not is_async:
        raise ServiceDefinitionError(
            f"{where}: a service declares only 'async def' methods, and '{name}' is a plain "
            f"def; make it 'async def {name}(...)' to be an RPC method, or name it '_{name}' "
            f"(or move it to the handler) if it is a helper"
        )
    if name in CLIENT_RESERVED_NAMES:
        raise ServiceDefinitionError(
            f"{where}: '{name}' is a name of the client's own API (client.{name}), so "
            f"client.{name}(...) could not call this method; rename it (only the "
            f"declaration order reaches the wire, so the Rust name may stay). Reserved: "
            f"{', '.join(sorted(CLIENT_RESERVED_NAMES))} and names starting with '_'"
        )
    return True


def _method_spec(service: type[Any], name: str, func: Callable[..., Any], tag: int) -> MethodSpec:
    where = f"{service.__name__}.{name}"
    hints = _hints(func, where)
    params = list(inspect.signature(func).parameters.values())[1:]  # drop self
    arg_names: list[str] = []
    arg_types: list[Any] = []
    for param in params:
        what = f"{where}: parameter {param.name!r}"
        if param.kind is param.KEYWORD_ONLY:
            raise ServiceDefinitionError(
                f"{what} is keyword-only; the wire is positional and handlers are called "
                f"positionally: declare it before the '*' (a client may still pass it by "
                f"keyword: client.{name}({param.name}=...))"
            )
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise ServiceDefinitionError(
                f"{where}: '{star}{param.name}' has no Rust equivalent; declare each argument "
                f"(a list[T] argument carries many values)"
            )
        if param.name in RESERVED_PARAMETER_NAMES:
            raise ServiceDefinitionError(
                f"{what}: every client method takes timeout= (seconds to wait for the "
                f"answer), so a parameter may not be called {param.name!r}; rename it"
            )
        if param.name not in hints:
            raise ServiceDefinitionError(
                f"{what} needs a type (e.g. '{param.name}: u32'; only types reach the wire)"
            )
        tp = hints[param.name]
        codec = _codec_or_explain(tp, what)
        if param.default is not param.empty:
            try:
                codec.encode(param.default)
            except EncodeError as exc:
                raise ServiceDefinitionError(
                    f"{what}: the default {param.default!r} is not a {_type_name(tp)}: {exc}"
                ) from None
        arg_names.append(param.name)
        arg_types.append(tp)
    if "return" not in hints:
        raise ServiceDefinitionError(
            f"{where}: declare the return type ('-> None' for Rust's ())"
        )
    return_type = hints["return"]
    result_codec = _codec_or_explain(return_type, f"{where}: the return type")
    variant_name = "".join(part.capitalize() for part in name.split("_")) or name
    variant = msgspec.defstruct(
        variant_name,
        list(zip(arg_names, arg_types, strict=True)),
        bases=(Variant,),
        frozen=True,
        module=service.__module__,
    )
    try:
        codec_for(variant)
    except TypeError as exc:
        raise ServiceDefinitionError(f"{where}: {exc}") from exc
    signature = inspect.Signature(
        [p.replace(annotation=hints[p.name]) for p in params], return_annotation=return_type
    )
    return MethodSpec(
        name,
        tag,
        tuple(arg_names),
        tuple(arg_types),
        return_type,
        variant,
        result_codec,
        _result_error_type(return_type),
        signature,
    )


def _hints(func: Callable[..., Any], where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except NameError as exc:
        raise _Unresolved(f"{where}: cannot resolve annotations: {exc}") from exc
    except Exception as exc:
        raise ServiceDefinitionError(f"{where}: cannot resolve annotations: {exc}") from exc


def _codec_or_explain(tp: Any, what: str) -> Codec:
    """The codec of ``tp``, or ServiceDefinitionError saying what is wrong and what fits."""
    if tp is int:
        raise ServiceDefinitionError(
            f"{what} is a plain int; declare its width: {_INT_WIDTHS} "
            f"(Rust u32 -> hardlight_core.u32)"
        )
    try:
        codec = codec_for(tp)
    except TypeError as exc:
        advice = _advice(tp)
        raise ServiceDefinitionError(
            f"{what} is {_type_name(tp)}, which is not a Rust type: {exc}"
            + (f" ({advice})" if advice else "")
        ) from None
    for tuple_type in tuples_rkyv_rejects(tp):
        warnings.warn(
            f"{what}: {_type_name(tuple_type)} has two or more elements that may hold "
            "out-of-line data (a String over 8 bytes, Vec, Box, HashMap): rkyv 0.7, and so "
            "the Rust reference, rejects its own archive of such a tuple when they do, so "
            "those values fail to decode on both sides; declare a struct (msgspec.Struct) "
            "with the same fields instead",
            RkyvTupleWarning,
            stacklevel=2,
        )
    return codec


class RkyvTupleWarning(UserWarning):
    """A declared tuple type that rkyv 0.7 cannot validate for some values (see
    :func:`hardlight_core._codec.tuples_rkyv_rejects`)."""


def _advice(tp: Any) -> str:
    if tp is list:
        return "Rust Vec<T> -> list[T], Vec<u8> -> bytes"
    if tp is dict:
        return "Rust HashMap<K, V> -> dict[K, V]"
    if tp is float:
        return "Rust f64 -> float or hardlight_core.f64, f32 -> hardlight_core.f32"
    if tp is typing.Any or tp is object:
        return "every value needs a concrete Rust type: see the table in README.md"
    if isinstance(tp, type) and not issubclass(tp, msgspec.Struct | enum.Enum):
        return (
            "a Rust struct is a msgspec.Struct subclass, a unit enum an enum.Enum subclass, "
            "an enum with data a union of Variant subclasses"
        )
    return ""


def _type_name(tp: Any) -> str:
    """A Python annotation as a user wrote it (``u32``, ``list[u8]``, ``Kind | None``)."""
    if typing.get_origin(tp) is typing.Annotated:
        base, *marks = typing.get_args(tp)
        for mark in marks:
            if isinstance(mark, Int | Float):
                return mark.name
            if isinstance(mark, CharMarker):
                return "char"
            if isinstance(mark, BoxMarker):
                return f"Box[{_type_name(base)}]"
            if isinstance(mark, ArrayLen):
                (item, _) = typing.get_args(base)
                return f"Array[{_type_name(item)}, {mark.n}]"
        return _type_name(base)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None and args:
        name = getattr(origin, "__name__", repr(origin))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]"
    if tp is None or tp is type(None):
        return "None"
    if isinstance(tp, type):
        return tp.__name__
    return repr(tp)


def _result_error_type(tp: Any) -> Any:
    """``E`` if ``tp`` is ``Result[T, E]`` (``Ok[T] | Err[E]``), else None."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = typing.get_args(tp)
    if len(args) == 2 and typing.get_origin(args[0]) is Ok and typing.get_origin(args[1]) is Err:
        return typing.get_args(args[1])[0]
    return None


# -- checking handlers -----------------------------------------------------------------------


def _check_handler(handler: type[Any], spec: ServiceSpec) -> None:
    """A handler implements every method of its service, each ``async def`` with the
    declared parameters (names, order, types where both are annotated)."""
    service = spec.service
    for method in spec.methods:
        where = f"{handler.__name__}.{method.name}"
        declared = f"{service.__name__}.{method.name}{_render(method)}"
        owner = next(k for k in handler.__mro__ if method.name in k.__dict__)
        if owner is service:
            raise ServiceDefinitionError(
                f"{handler.__name__} lacks {method.name}(): implement "
                f"'async def {method.name}{_render(method)}' (declared by {declared})"
            )
        raw = owner.__dict__[method.name]
        if not inspect.isfunction(raw):
            raise ServiceDefinitionError(
                f"{where} is a {type(raw).__name__}, not a method: declare "
                f"'async def {method.name}{_render(method)}' ({declared})"
            )
        if not inspect.iscoroutinefunction(inspect.unwrap(raw)):
            raise ServiceDefinitionError(
                f"{where} is a plain def; declare it 'async def' (the server awaits it; "
                f"{declared})"
            )
        _check_parameters(where, declared, raw, method)


def _check_parameters(where: str, declared: str, func: Any, method: MethodSpec) -> None:
    signature = inspect.signature(func)  # follows __wrapped__, like the call will
    params = list(signature.parameters.values())[1:]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    has_star = any(p.kind is p.VAR_POSITIONAL for p in params)
    try:
        signature.bind(None, *method.arg_names)
    except TypeError as exc:
        raise ServiceDefinitionError(
            f"{where}{_render_params(params)} cannot take the declared arguments ({exc}); "
            f"the declaration is {declared}"
        ) from None
    if not has_star:
        names = tuple(p.name for p in positional[: len(method.arg_names)])
        if names != method.arg_names:
            raise ServiceDefinitionError(
                f"{where}: parameters ({', '.join(names)}) differ from the declaration's "
                f"({', '.join(method.arg_names)}) in {declared}: use the declared names "
                f"and order (clients may pass arguments by keyword)"
            )
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:
        return  # names defined later or locally: the declaration's types rule the wire
    for name, tp in zip(method.arg_names, method.arg_types, strict=True):
        if name in hints and not _compatible(hints[name], tp):
            raise ServiceDefinitionError(
                f"{where}: parameter {name!r} is {_type_name(hints[name])} here but "
                f"{_type_name(tp)} in {declared}"
            )
    if "return" in hints and not _compatible(hints["return"], method.return_type):
        raise ServiceDefinitionError(
            f"{where}: returns {_type_name(hints['return'])} here but "
            f"{_type_name(method.return_type)} in {declared}"
        )


def _compatible(here: Any, declared: Any) -> bool:
    """Whether a handler's annotation agrees with the declaration's: the same type, or the
    Python type under it (``int`` for ``u32``: the declaration alone rules the wire), at
    any depth; a different width or type does not."""
    if here == declared:
        return True
    if typing.get_origin(declared) is typing.Annotated:
        if typing.get_origin(here) is typing.Annotated:
            return False  # both say which Rust type, and they differ
        return _compatible(here, typing.get_args(declared)[0])
    origin_here, origin_declared = typing.get_origin(here), typing.get_origin(declared)
    unions = (typing.Union, types.UnionType)
    if origin_here in unions and origin_declared in unions:
        pass
    elif origin_here is None or origin_here is not origin_declared:
        return False
    args_here, args_declared = typing.get_args(here), typing.get_args(declared)
    return len(args_here) == len(args_declared) and all(
        _compatible(h, d) for h, d in zip(args_here, args_declared, strict=True)
    )


def _render(method: MethodSpec) -> str:
    args = ", ".join(
        f"{n}: {_type_name(t)}" for n, t in zip(method.arg_names, method.arg_types, strict=True)
    )
    return f"(self{', ' if args else ''}{args}) -> {_type_name(method.return_type)}"


def _render_params(params: list[inspect.Parameter]) -> str:
    return "(self" + "".join(f", {p}" for p in params) + ")"


# -- answering -------------------------------------------------------------------------------


def outcome_to_output(
    spec: ServiceSpec,
    method: MethodSpec,
    value: Any,
    error: BaseException | None,
    call_id: int | None = None,
) -> Ok[bytes] | Err[RpcHandlerError]:
    """The wire answer for a handler that returned ``value`` or raised ``error``.

    An :class:`~hardlight_core.AppError` raised by a method declared ``-> Result[T, E]``
    answers ``Ok(Err(error.error))``, as returning ``Err(error.error)`` would.
    """
    raised = False
    if error is not None:
        if isinstance(error, RpcError):
            return Err(error.kind)
        if isinstance(error, AppError) and method.error_type is not None:
            value, raised = Err(error.error), True
        else:
            _log_failure(spec, method, error, call_id)
            return Err(RpcHandlerError.HandlerPanicked)
    try:
        return Ok(method.result_codec.encode(value))
    except EncodeError as exc:
        log.error(
            "handler %s.%s%s %s that does not encode as %s: %s; answering ServerEncodeError",
            spec.service.__name__,
            method.name,
            _call(call_id),
            "raised an AppError" if raised else "returned a value",
            _type_name(method.return_type),
            exc,
        )
        return Err(RpcHandlerError.ServerEncodeError)


def _log_failure(
    spec: ServiceSpec, method: MethodSpec, error: BaseException, call_id: int | None
) -> None:
    if isinstance(error, AppError):
        hint = (
            f"AppError needs the method declared '-> Result[T, E]' "
            f"(it returns {_type_name(method.return_type)})"
        )
    else:
        hint = (
            "the client gets no message; to send an application error, return "
            "Result[T, E] (see docs/errors.md)"
        )
    log.error(
        "handler %s.%s%s raised %s: %s; answering HandlerPanicked (%s)",
        spec.service.__name__,
        method.name,
        _call(call_id),
        type(error).__name__,
        error,
        hint,
        exc_info=(type(error), error, error.__traceback__),
    )


def _call(call_id: int | None) -> str:
    return "" if call_id is None else f" (call {call_id})"


class Handler:
    """Base class of server-side handlers: one instance per connection.

    ``State`` (class attribute, inherited from the service if declared there) is
    instantiated per connection as ``self.state``; ``Event`` is the default event
    type for :meth:`emit`. ``self.auth`` is what the server's ``authenticate`` hook
    returned for this connection.
    """

    State: ClassVar[Any] = None
    Event: ClassVar[Any] = None
    state: Any
    auth: Any = None
    _hl_session: Any = None
    _hl_checked: ClassVar[bool] = True

    def __init_subclass__(cls, *, checked: bool = True, **kwargs: Any) -> None:
        """Check the handler against its service as the class is defined: every method
        implemented, ``async def``, with the declared parameters and types.

        ``checked=False`` skips this (a partial base class, or a test of what the server
        does with a broken handler); the server then answers such calls HandlerPanicked.
        """
        super().__init_subclass__(**kwargs)
        cls._hl_checked = checked
        if not checked or not any(Service in k.__bases__ for k in cls.__mro__):
            return  # a mixin of handler helpers, or opted out
        with contextlib.suppress(_Unresolved):  # names defined later: checked at build
            ServiceSpec.of(cls)

    def _hl_bind(self, session: Any, auth: Any) -> None:
        """Called by the engine when the connection is accepted."""
        self._hl_session = session
        self.auth = auth
        if self.State is not None and getattr(self, "state", None) is None:
            self.state = self.State()

    def subscribe(self, topic: TopicLike) -> None:
        """Subscribe this connection to ``topic`` (a Topic, str or bytes: see
        :func:`~hardlight_core.as_topic`); effective for the very next emit."""
        topic = as_topic(topic)
        session = self._session()
        session.core.subscribe(session, topic)

    def unsubscribe(self, topic: TopicLike) -> None:
        """Unsubscribe this connection from ``topic`` (a Topic, str or bytes)."""
        topic = as_topic(topic)
        session = self._session()
        session.core.unsubscribe(session, topic)

    def emit(self, topic: TopicLike, event: Any, event_type: Any = None) -> int:
        """Send ``event`` to every connection subscribed to ``topic`` (a Topic, str or
        bytes); returns how many."""
        topic = as_topic(topic)
        tp = event_type if event_type is not None else self.Event
        if tp is None:
            raise TypeError("set Handler.Event or pass event_type= to emit()")
        count: int = self._session().core.emit(topic, encode(event, tp))
        return count

    @property
    def peer(self) -> Any:
        """The peer's address as the adapter knows it (``(host, port)`` on a socket, the
        ASGI ``client``), or None."""
        session = self._hl_session
        return getattr(session, "peer", None) if session is not None else None

    @property
    def handshake(self) -> HandshakeInfo | None:
        """The upgrade request of this connection: ``path``, ``headers``, ``origin``,
        ``header(name)`` (e.g. ``self.handshake.header("authorization")``)."""
        session = self._hl_session
        info: HandshakeInfo | None = getattr(session, "handshake", None)
        return info

    def sync_state(self) -> None:
        """Send the state's changed fields now (done automatically after every call)."""
        self._session().sync_state()

    def _session(self) -> Any:
        if self._hl_session is None:
            raise RuntimeError("this handler is not attached to a connection")
        return self._hl_session
