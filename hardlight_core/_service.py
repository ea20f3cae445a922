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

Raise an :class:`~hardlight_core.RpcError` subclass to answer that error; any
other exception answers ``HandlerPanicked`` and is logged.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from ._codec import Codec, codec_for, encode
from ._config import HandshakeInfo
from ._envelope import Topic
from ._errors import EncodeError, RpcError, RpcHandlerError
from ._types import Err, Ok, Variant

__all__ = ["Handler", "MethodSpec", "Service", "ServiceSpec", "outcome_to_output"]

log = logging.getLogger("hardlight")


class Service:
    """Base class of service declarations: subclass it and declare ``async def`` methods."""

    State: ClassVar[Any] = None


@dataclass(frozen=True)
class MethodSpec:
    """One RPC method: its tag, arguments and the codecs of its call and result."""

    name: str
    tag: int
    arg_names: tuple[str, ...]
    arg_types: tuple[Any, ...]
    return_type: Any
    variant: type[Any]
    result_codec: Codec


class ServiceSpec:
    """Everything derived from a service class, computed once per class."""

    _cache: ClassVar[dict[type[Any], ServiceSpec]] = {}

    def __init__(self, service: type[Any]) -> None:
        self.service = service
        methods: list[MethodSpec] = []
        for name, func in service.__dict__.items():
            if name.startswith("_") or not inspect.iscoroutinefunction(func):
                continue
            methods.append(_method_spec(service, name, func, len(methods)))
        if not methods:
            raise TypeError(f"service {service.__name__} declares no async methods")
        if len(methods) > 65535:
            raise TypeError("a service may declare at most 65535 methods")
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
    def of(cls, service_or_handler: type[Any]) -> ServiceSpec:
        """The spec of a service class (or of the service a handler class implements)."""
        service = _find_service(service_or_handler)
        spec = cls._cache.get(service)
        if spec is None:
            spec = cls._cache[service] = cls(service)
        return spec

    def method(self, name: str) -> MethodSpec:
        """The method called ``name`` (AttributeError-like LookupError if none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise LookupError(f"{self.service.__name__} has no method {name!r}") from None

    def encode_call(self, name: str, *args: Any) -> bytes:
        """Client side: the archived ``RpcCall`` for ``name(*args)``."""
        if not args:
            constant = self._constant_calls.get(name)
            if constant is not None:
                return constant
        method = self.method(name)
        if len(args) != len(method.arg_names):
            raise EncodeError(
                f"{name}() takes {len(method.arg_names)} arguments, {len(args)} given"
            )
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
    raise TypeError(f"{cls.__name__} is not a Service (derive the declaration from Service)")


def _method_spec(service: type[Any], name: str, func: Callable[..., Any], tag: int) -> MethodSpec:
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise TypeError(f"{service.__name__}.{name}: cannot resolve annotations: {exc}") from exc
    params = list(inspect.signature(func).parameters.values())[1:]  # drop self
    arg_names: list[str] = []
    arg_types: list[Any] = []
    for param in params:
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            raise TypeError(f"{service.__name__}.{name}: only plain positional arguments")
        if param.name not in hints:
            raise TypeError(f"{service.__name__}.{name}: argument {param.name!r} needs a type")
        arg_names.append(param.name)
        arg_types.append(hints[param.name])
    if "return" not in hints:
        raise TypeError(f"{service.__name__}.{name}: declare the return type (-> None for ())")
    return_type = hints["return"]
    variant_name = "".join(part.capitalize() for part in name.split("_")) or name
    variant = msgspec.defstruct(
        variant_name,
        list(zip(arg_names, arg_types, strict=True)),
        bases=(Variant,),
        frozen=True,
        module=service.__module__,
    )
    try:
        result_codec = codec_for(return_type)
        codec_for(variant)
    except TypeError as exc:
        raise TypeError(f"{service.__name__}.{name}: {exc}") from exc
    return MethodSpec(
        name, tag, tuple(arg_names), tuple(arg_types), return_type, variant, result_codec
    )


def outcome_to_output(
    spec: ServiceSpec, method: MethodSpec, value: Any, error: BaseException | None
) -> Ok[bytes] | Err[RpcHandlerError]:
    """The wire answer for a handler that returned ``value`` or raised ``error``."""
    if error is not None:
        if isinstance(error, RpcError):
            return Err(error.kind)
        log.error(
            "handler %s.%s raised; answering HandlerPanicked",
            spec.service.__name__,
            method.name,
            exc_info=(type(error), error, error.__traceback__),
        )
        return Err(RpcHandlerError.HandlerPanicked)
    try:
        return Ok(method.result_codec.encode(value))
    except EncodeError as exc:
        log.error("%s returned a value that does not encode: %s", method.name, exc)
        return Err(RpcHandlerError.ServerEncodeError)


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

    def _hl_bind(self, session: Any, auth: Any) -> None:
        """Called by the engine when the connection is accepted."""
        self._hl_session = session
        self.auth = auth
        if self.State is not None and getattr(self, "state", None) is None:
            self.state = self.State()

    def subscribe(self, topic: Topic) -> None:
        """Subscribe this connection to ``topic`` (effective for the very next emit)."""
        session = self._session()
        session.core.subscribe(session, topic)

    def unsubscribe(self, topic: Topic) -> None:
        """Unsubscribe this connection from ``topic``."""
        session = self._session()
        session.core.unsubscribe(session, topic)

    def emit(self, topic: Topic, event: Any, event_type: Any = None) -> int:
        """Send ``event`` to every connection subscribed to ``topic``; returns how many."""
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
