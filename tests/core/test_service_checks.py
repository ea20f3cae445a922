"""Declarations and handlers are checked when their class is defined (or, for names not
defined yet, when a server or client is built): messages name class, method, parameter
and the types, and say what would fit."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from hardlight_core import (
    EncodeError,
    Handler,
    HardLightError,
    Service,
    ServiceDefinitionError,
    ServiceSpec,
    u8,
    u32,
    u64,
)
from hardlight_core._server_core import ServerCore
from hardlight_core._service import CLIENT_RESERVED_NAMES


def _raises(match: str) -> Any:
    return pytest.raises(ServiceDefinitionError, match=re.escape(match))


# -- declarations: types ----------------------------------------------------------------------


class NotAStruct:
    pass


def test_a_plain_int_parameter_names_class_method_parameter_and_the_rust_widths() -> None:
    with pytest.raises(ServiceDefinitionError) as info:

        class Kv(Service):
            async def put(self, key: str, value: int) -> None: ...

    assert str(info.value) == (
        "Kv.put: parameter 'value' is a plain int; declare its width: "
        "u8/u16/u32/u64/u128/i8/i16/i32/i64/i128/usize/isize (Rust u32 -> hardlight_core.u32)"
    )
    assert isinstance(info.value, TypeError) and isinstance(info.value, HardLightError)


def test_a_plain_int_return_and_nested_ints_are_refused_with_the_python_type() -> None:
    with _raises("Kv.get: the return type is a plain int; declare its width: u8/"):

        class Kv(Service):
            async def get(self) -> int: ...

    with _raises("Kv2.put: parameter 'values' is list[int], which is not a Rust type: plain int"):

        class Kv2(Service):
            async def put(self, values: list[int]) -> None: ...

    with _raises("Kv3.put: parameter 'm' is dict, which is not a Rust type") as info:

        class Kv3(Service):
            async def put(self, m: dict) -> None: ...  # type: ignore[type-arg]

    assert "HashMap<K, V> -> dict[K, V]" in str(info.value)

    with _raises("Kv4.put: parameter 'x' is NotAStruct, which is not a Rust type") as info:

        class Kv4(Service):
            async def put(self, x: NotAStruct) -> None: ...

    assert "msgspec.Struct subclass" in str(info.value)


def test_missing_annotations_are_refused() -> None:
    with _raises("Kv.put: parameter 'x' needs a type"):

        class Kv(Service):
            async def put(self, x) -> None: ...  # type: ignore[no-untyped-def]

    with _raises("Kv2.put: declare the return type ('-> None' for Rust's ())"):

        class Kv2(Service):
            async def put(self, x: u8): ...  # type: ignore[no-untyped-def]


# -- declarations: names and kinds of methods -------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLIENT_RESERVED_NAMES))
def test_names_of_the_clients_own_api_are_refused(name: str) -> None:
    body = {name: _async_stub()}
    with _raises(f"Kv.{name}: '{name}' is a name of the client's own API"):
        type("Kv", (Service,), body)


def test_async_methods_starting_with_an_underscore_are_refused() -> None:
    with _raises("Kv._get: an RPC method's name may not start with '_'"):

        class Kv(Service):
            async def get(self) -> u32: ...
            async def _get(self) -> u32: ...


def test_a_public_plain_def_is_refused_and_private_helpers_are_not_methods() -> None:
    with _raises("Kv.describe: a service declares only 'async def' methods, and 'describe' "
                 "is a plain def; make it 'async def describe(...)'"):

        class Kv(Service):
            async def get(self) -> u32: ...
            def describe(self) -> str:
                return "kv"

    class Kv2(Service):
        limit = 5

        async def get(self) -> u32: ...

        def _describe(self) -> str:
            return "kv"

        @staticmethod
        def helper() -> int:
            return 1

    assert [m.name for m in ServiceSpec.of(Kv2).methods] == ["get"]


def test_a_declaration_without_methods_is_refused() -> None:
    with _raises("service Empty declares no async methods"):

        class Empty(Service):
            pass


@pytest.mark.parametrize("client_module", ["hardlight_asyncio", "hardlight_anyio",
                                           "hardlight_threads"])
def test_the_reserved_names_are_the_clients_public_names(client_module: str) -> None:
    """Fails when a client grows a public attribute without reserving its name here."""
    import importlib

    client_class = importlib.import_module(client_module).Client

    class Probe(Service):
        async def ping(self) -> None: ...

    client = client_class(Probe)
    public = {n for n in dir(client_class) if not n.startswith("_")}
    public |= {n for n in vars(client) if not n.startswith("_")}
    public -= {"ping"}
    assert public <= CLIENT_RESERVED_NAMES, sorted(public - CLIENT_RESERVED_NAMES)


# -- declarations: parameters, keywords and defaults ------------------------------------------


def test_keyword_only_and_star_parameters_are_refused() -> None:
    with _raises("Kv.put: parameter 'value' is keyword-only; the wire is positional"):

        class Kv(Service):
            async def put(self, key: str, *, value: u32) -> None: ...

    with _raises("Kv2.put: '*keys' has no Rust equivalent"):

        class Kv2(Service):
            async def put(self, *keys: str) -> None: ...

    with _raises("Kv3.put: '**items' has no Rust equivalent"):

        class Kv3(Service):
            async def put(self, **items: str) -> None: ...


def test_a_parameter_named_timeout_is_refused() -> None:
    with _raises("Kv.wait: parameter 'timeout': every client method takes timeout="):

        class Kv(Service):
            async def wait(self, timeout: u32) -> None: ...


def test_a_default_that_does_not_fit_its_type_is_refused() -> None:
    with _raises("Kv.put: parameter 'value': the default 300 is not a u8"):

        class Kv(Service):
            async def put(self, key: str, value: u8 = 300) -> None: ...


class Store(Service):
    async def put(self, key: str, value: u32 = 7) -> None: ...
    async def pair(self, a: u8, b: u8, /) -> u8: ...


def test_keywords_map_to_positions_and_defaults_fill_in() -> None:
    spec = ServiceSpec.of(Store)
    wire = spec.encode_call("put", "a", 1)
    assert spec.encode_call("put", key="a", value=1) == wire
    assert spec.encode_call("put", value=1, key="a") == wire
    assert spec.encode_call("put", "a", value=1) == wire
    assert spec.encode_call("put", "a") == spec.encode_call("put", "a", 7)
    assert spec.bind_args("put", (), {"key": "k"}) == ("k", 7)
    method, args = spec.decode_call(spec.encode_call("put", key="z"))
    assert (method.name, args) == ("put", ("z", 7))
    with pytest.raises(EncodeError, match="put\\(\\): got an unexpected keyword argument 'valu'"):
        spec.encode_call("put", key="a", valu=1)
    with pytest.raises(EncodeError, match="missing a required argument: 'key'"):
        spec.encode_call("put", value=1)
    with pytest.raises(EncodeError, match="too many positional arguments"):
        spec.encode_call("put", "a", 1, 2)
    with pytest.raises(EncodeError, match="passed as a keyword"):
        spec.encode_call("pair", a=1, b=2)  # positional-only stays positional
    assert spec.decode_call(spec.encode_call("pair", 1, 2))[1] == (1, 2)


# -- names defined later ----------------------------------------------------------------------


class Later(Service):
    async def put(self, item: LaterItem) -> None: ...  # defined below: checked at build


class LaterHandler(Later, Handler):
    async def put(self, item: LaterItem) -> None:
        return None


class LaterLacking(Later, Handler):
    pass  # lacks put: caught when a server is built


class LaterItem(msgspec.Struct):
    n: u32


def test_names_defined_later_are_checked_when_a_server_is_built() -> None:
    assert [m.name for m in ServiceSpec.of(LaterHandler).methods] == ["put"]
    ServerCore(LaterHandler)
    with _raises("LaterLacking lacks put(): implement 'async def put(self, item: LaterItem)"):
        ServerCore(LaterLacking)


def test_names_never_defined_are_refused_when_built() -> None:
    class Never(Service):
        async def put(self, item: NeverDefined) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with _raises("Never.put: cannot resolve annotations"):
        ServiceSpec.of(Never)


# -- handlers ---------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = 0
    GREEN = 1


class Kv(Service):
    async def put(self, key: str, value: u32) -> None: ...
    async def get(self, key: str) -> u32: ...


def test_a_complete_handler_is_accepted_and_may_have_helpers() -> None:
    class KvHandler(Kv, Handler):
        async def put(self, key: str, value: u32, extra: u8 = 0) -> None:
            self._note(key)

        async def get(self, key: str) -> u32:
            return 1

        def _note(self, key: str) -> None:
            pass

        def describe(self) -> str:  # handlers may have any helper
            return "kv"

    ServerCore(KvHandler)


def test_a_handler_that_lacks_a_method_is_refused() -> None:
    with _raises("KvHandler lacks get(): implement 'async def get(self, key: str) -> u32' "
                 "(declared by Kv.get(self, key: str) -> u32)"):

        class KvHandler(Kv, Handler):
            async def put(self, key: str, value: u32) -> None: ...


def test_a_handler_method_that_is_not_async_is_refused() -> None:
    with _raises("KvHandler.get is a plain def; declare it 'async def'"):

        class KvHandler(Kv, Handler):
            async def put(self, key: str, value: u32) -> None: ...
            def get(self, key: str) -> u32:  # type: ignore[override]
                return 1

    with _raises("KvHandler2.get is a staticmethod, not a method"):

        class KvHandler2(Kv, Handler):
            async def put(self, key: str, value: u32) -> None: ...
            @staticmethod
            async def get(key: str) -> u32:  # type: ignore[override]
                return 1


def test_a_handler_whose_parameters_differ_is_refused() -> None:
    with _raises("KvHandler.get(self) cannot take the declared arguments (too many positional "
                 "arguments); the declaration is Kv.get(self, key: str) -> u32"):

        class KvHandler(Kv, Handler):
            async def put(self, key: str, value: u32) -> None: ...
            async def get(self) -> u32:  # type: ignore[override]
                return 1

    with _raises("KvHandler2.put: parameters (value, key) differ from the declaration's "
                 "(key, value)"):

        class KvHandler2(Kv, Handler):
            async def put(self, value: str, key: u32) -> None: ...  # type: ignore[override]
            async def get(self, key: str) -> u32:
                return 1

    with _raises("KvHandler3.put: parameter 'value' is u64 here but u32 in Kv.put"):

        class KvHandler3(Kv, Handler):
            async def put(self, key: str, value: u64) -> None: ...
            async def get(self, key: str) -> u32:
                return 1

    with _raises("KvHandler4.get: returns Color here but u32 in Kv.get"):

        class KvHandler4(Kv, Handler):
            async def put(self, key: str, value: u32) -> None: ...
            async def get(self, key: str) -> Color:  # type: ignore[override]
                return Color.RED


def _logged(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(function)
    def wrapper(*args: Any) -> Awaitable[Any]:
        return function(*args)

    return wrapper


def test_decorated_handlers_are_judged_by_the_function_they_wrap() -> None:
    class KvHandler(Kv, Handler):
        @_logged  # type: ignore[arg-type]
        async def put(self, key: str, value: u32) -> None: ...

        @_logged  # type: ignore[arg-type]
        async def get(self, key: str) -> u32:
            return 1

    ServerCore(KvHandler)

    with _raises("KvHandler2.get(self) cannot take the declared arguments"):

        class KvHandler2(Kv, Handler):
            async def put(self, key: str, value: u32) -> None: ...

            @_logged  # type: ignore[arg-type]
            async def get(self) -> u32:
                return 1


def test_checked_false_skips_the_check_for_partial_bases() -> None:
    class Base(Kv, Handler, checked=False):
        async def put(self, key: str, value: u32) -> None: ...

    ServerCore(Base)  # opted out: a missing get() answers HandlerPanicked at call time

    class Full(Base):
        async def get(self, key: str) -> u32:
            return 1

    ServerCore(Full)

    with _raises("Lacking lacks get()"):

        class Lacking(Base):
            pass


def test_handler_mixins_without_a_service_are_not_checked() -> None:
    class Helpers(Handler):
        def shout(self, text: str) -> str:
            return text.upper()

    class KvHandler(Helpers, Kv):
        async def put(self, key: str, value: u32) -> None: ...
        async def get(self, key: str) -> u32:
            return 1

    ServerCore(KvHandler)


def _async_stub() -> Any:
    async def stub(self: Any) -> None: ...

    return stub


def test_a_handler_may_annotate_the_python_type_under_a_declared_rust_type() -> None:
    class Lists(Service):
        async def put(self, values: list[u32], limit: u32 | None) -> u8: ...

    class ListsHandler(Lists, Handler):
        async def put(self, values: list[int], limit: int | None) -> int:
            return 0

    ServerCore(ListsHandler)

    with _raises("ListsHandler2.put: parameter 'values' is list[u64] here but list[u32]"):

        class ListsHandler2(Lists, Handler):
            async def put(self, values: list[u64], limit: u32 | None) -> u8:
                return 0

    with _raises("ListsHandler3.put: parameter 'limit' is str | None here but u32 | None"):

        class ListsHandler3(Lists, Handler):
            async def put(self, values: list[u32], limit: str | None) -> u8:  # type: ignore[override]
                return 0


def test_a_tuple_rkyv_cannot_validate_is_warned_about_at_definition() -> None:
    import msgspec

    from hardlight_core import Service
    from hardlight_core._codec import decode, encode
    from hardlight_core._errors import DecodeError
    from hardlight_core._service import RkyvTupleWarning

    with pytest.warns(RkyvTupleWarning, match=r"tuple\[str, str\].*struct"):

        class Pairs(Service):
            async def pair(self) -> tuple[str, str]:
                raise NotImplementedError

    # why: such values really do not decode (as rkyv itself refuses them)
    with pytest.raises(DecodeError):
        decode(encode(("a" * 20, "b" * 20), tuple[str, str]), tuple[str, str])

    class Pair(msgspec.Struct):
        first: str
        second: str

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")

        class Fine(Service):
            async def pair(self) -> Pair:
                raise NotImplementedError

            async def one(self, x: tuple[u32, str]) -> tuple[u32, u32]:
                raise NotImplementedError
