"""How Python type hints declare rkyv-archivable (Rust) types.

=====================  ===================================================
Rust                   Python annotation
=====================  ===================================================
u8 .. u128, i8 .. i128 ``u8`` .. ``u128``, ``i8`` .. ``i128`` (plain ``int`` is refused)
usize / isize          ``usize`` / ``isize`` (archived as 32-bit)
f32 / f64              ``f32`` / ``f64`` (plain ``float`` means f64)
bool, char, String     ``bool``, ``char`` (a one-character str), ``str``
Vec<u8>                ``bytes``
Vec<T>                 ``list[T]``
(A, B, ..)             ``tuple[A, B, ..]``
[T; N]                 ``Array[T, N]`` (values are tuples)
Option<T>              ``Optional[T]`` / ``T | None`` (values: None or the value), or
                       ``Option[T]`` (values: None or :class:`Some`); nest with
                       ``Option[...]``: ``Optional[Optional[T]]`` is flattened by Python
Box<T>                 ``Box[T]``
Result<T, E>           ``Result[T, E]`` (values are :class:`Ok` / :class:`Err`)
HashMap<K, V>          ``dict[K, V]``
()                     ``None``
struct                 a :class:`msgspec.Struct` subclass; fields in Rust declaration order
unit-only enum         an :class:`enum.Enum` subclass; tag = member position
enum with data         a union ``A | B | C`` of :class:`Variant` subclasses; tag = position
                       in the union (a lone Variant subclass is a one-variant enum)
=====================  ===================================================

Only order and types reach the wire, so Python names may differ from Rust's
(``from_`` for ``from``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Generic, NoReturn, TypeAlias, TypeVar

import msgspec

from ._errors import AppError

__all__ = [
    "Array",
    "Box",
    "Err",
    "Float",
    "Int",
    "Ok",
    "Option",
    "Result",
    "Some",
    "Variant",
    "char",
    "f32",
    "f64",
    "i8",
    "i16",
    "i32",
    "i64",
    "i128",
    "isize",
    "u8",
    "u16",
    "u32",
    "u64",
    "u128",
    "unwrap",
    "usize",
]

T = TypeVar("T")
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Int:
    """Marker: a fixed-width integer (``bits`` is the archived width)."""

    name: str
    bits: int
    signed: bool


@dataclass(frozen=True, slots=True)
class Float:
    """Marker: an IEEE float of ``bits`` 32 or 64."""

    name: str
    bits: int


@dataclass(frozen=True, slots=True)
class CharMarker:
    """Marker: a Rust ``char`` (one Unicode scalar value)."""


@dataclass(frozen=True, slots=True)
class BoxMarker:
    """Marker: a Rust ``Box<T>`` (a relative pointer to the archived T)."""


@dataclass(frozen=True, slots=True)
class ArrayLen:
    """Marker: a Rust fixed-size array ``[T; n]``."""

    n: int


u8: TypeAlias = Annotated[int, Int("u8", 8, False)]
u16: TypeAlias = Annotated[int, Int("u16", 16, False)]
u32: TypeAlias = Annotated[int, Int("u32", 32, False)]
u64: TypeAlias = Annotated[int, Int("u64", 64, False)]
u128: TypeAlias = Annotated[int, Int("u128", 128, False)]
i8: TypeAlias = Annotated[int, Int("i8", 8, True)]
i16: TypeAlias = Annotated[int, Int("i16", 16, True)]
i32: TypeAlias = Annotated[int, Int("i32", 32, True)]
i64: TypeAlias = Annotated[int, Int("i64", 64, True)]
i128: TypeAlias = Annotated[int, Int("i128", 128, True)]
usize: TypeAlias = Annotated[int, Int("usize", 32, False)]
isize: TypeAlias = Annotated[int, Int("isize", 32, True)]
f32: TypeAlias = Annotated[float, Float("f32", 32)]
f64: TypeAlias = Annotated[float, Float("f64", 64)]
char: TypeAlias = Annotated[str, CharMarker()]

Box: TypeAlias = Annotated[T, BoxMarker()]


class _ArrayForm:
    """``Array[T, N]``: a Rust ``[T; N]``, held in Python as a tuple of N values."""

    def __getitem__(self, params: tuple[Any, int]) -> Any:
        item, n = params
        if not isinstance(n, int) or n < 0:
            raise TypeError(f"Array length must be a non-negative int, got {n!r}")
        return Annotated[tuple[item, ...], ArrayLen(n)]  # type: ignore[valid-type]


Array = _ArrayForm()


class Ok(msgspec.Struct, Generic[T], frozen=True):
    """The ``Ok`` side of a :data:`Result`."""

    value: T

    def unwrap(self) -> T:
        """The value (``Err.unwrap`` raises instead, so ``result.unwrap()`` is typed ``T``)."""
        return self.value


class Err(msgspec.Struct, Generic[E], frozen=True):
    """The ``Err`` side of a :data:`Result`."""

    error: E

    def unwrap(self) -> NoReturn:
        """Raise :class:`~hardlight_core.AppError` carrying ``error``."""
        raise AppError(self.error)


Result: TypeAlias = Ok[T] | Err[E]
"""``Result[T, E]``: a Rust ``Result<T, E>`` whose values are ``Ok(value)`` or ``Err(error)``.

As a method's return type it is how an application error reaches the client (the
wire's own ``RpcHandlerError`` carries no text): see ``docs/errors.md``."""


def unwrap(result: Ok[T] | Err[Any]) -> T:
    """``result.value`` if it is ``Ok``; raises :class:`~hardlight_core.AppError` carrying
    the error if it is ``Err`` (so ``except AppError as e: e.error`` sees the ``E`` value)."""
    if isinstance(result, Ok):
        return result.value
    if isinstance(result, Err):
        raise AppError(result.error)
    raise TypeError(f"unwrap() takes an Ok or an Err, not {type(result).__name__}")


class Some(msgspec.Struct, Generic[T], frozen=True):
    """The ``Some`` side of an :data:`Option` (``None`` is the other side)."""

    value: T


Option: TypeAlias = Some[T] | None
"""``Option[T]``: a Rust ``Option<T>`` whose values are ``None`` or ``Some(value)``.

Unlike ``Optional[T]`` it nests: ``Option[Option[u8]]`` is ``Option<Option<u8>>``
(values ``None``, ``Some(None)``, ``Some(Some(5))``)."""


class Variant(msgspec.Struct, frozen=True):
    """Base class of the variants of a data-carrying Rust enum.

    Declare each variant as a subclass with its fields in Rust order (none for
    a unit variant; tuple variants are laid out like struct variants, so name
    their fields freely), then the enum as a union of the variants in Rust order::

        class Incremented(Variant):
            to: u32
            from_: u32

        class ServerSentTest(Variant):
            pass

        CounterEvent = Incremented | Decremented | ServerSentTest
    """
