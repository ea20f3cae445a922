"""The connection state (the reference's ``#[connection_state]`` struct) and its sync.

A state class is a mutable :class:`msgspec.Struct` whose fields all have
defaults, declared in Rust order. The server keeps a :class:`StateTracker`
per connection: after each handler call it archives every field and sends
one ``StateUpdate{index, data}`` for each field whose archive changed. The
client keeps a :class:`StateMirror` and applies updates by index.
"""

from __future__ import annotations

import enum
import logging
import typing
from typing import Any, Generic, TypeVar

import msgspec

from ._codec import Codec, codec_for
from ._envelope import StateUpdate, Topic
from ._errors import DecodeError

__all__ = ["StateMirror", "StateTracker", "state_fields"]

log = logging.getLogger("hardlight")

S = TypeVar("S")
_UNSET: Any = object()


def state_fields(state_type: type[Any]) -> list[tuple[str, Codec]]:
    """The state's fields in declaration order, each with its compiled codec."""
    if not (isinstance(state_type, type) and issubclass(state_type, msgspec.Struct)):
        raise TypeError(f"a connection state must be a msgspec.Struct subclass, not {state_type!r}")
    hints = typing.get_type_hints(state_type, include_extras=True)
    return [(name, codec_for(hints[name])) for name in state_type.__struct_fields__]


# values that cannot change in place: equal to the last synced one means unchanged
_IMMUTABLE = (int, float, str, bytes, bool, type(None), enum.Enum, Topic)


class StateTracker(Generic[S]):
    """Server side: which fields changed since the last sync."""

    __slots__ = ("_fields", "_synced", "_values")

    def __init__(self, state_type: type[S]) -> None:
        self._fields = state_fields(state_type)
        self._synced: list[bytes | None] = [None] * len(self._fields)
        self._values: list[Any] = [_UNSET] * len(self._fields)

    def changes(self, state: S) -> list[StateUpdate]:
        """One update per field whose archive differs from the last one returned.

        Fields holding immutable values are compared by value first and archived only
        when they differ; others (lists, dicts, structs) are archived every time,
        since they can change in place. All or nothing: if a field does not archive,
        the EncodeError propagates and nothing counts as synced.
        """
        updates = []
        synced = self._synced
        values = self._values
        seen: list[tuple[int, Any, bytes]] = []
        for index, (name, codec) in enumerate(self._fields):
            value = getattr(state, name)
            last = values[index]
            if (
                last is not _UNSET
                and type(value) is type(last)
                and isinstance(value, _IMMUTABLE)
                and value == last
            ):
                continue
            seen.append((index, value, codec.encode(value)))
        for index, value, data in seen:
            values[index] = value if isinstance(value, _IMMUTABLE) else _UNSET
            if data != synced[index]:
                synced[index] = data
                updates.append(StateUpdate(index, data))
        return updates

    def rollback(self, state: S) -> list[str]:
        """Put back, from its last synced archive, every field that does not archive or
        differs from it; returns the names of the fields restored."""
        restored = []
        for index, (name, codec) in enumerate(self._fields):
            data = self._synced[index]
            if data is None:
                continue
            try:
                current: bytes | None = codec.encode(getattr(state, name))
            except Exception:
                current = None
            if current != data:
                setattr(state, name, codec.decode(data))
                self._values[index] = _UNSET
                restored.append(name)
        return restored


class StateMirror(Generic[S]):
    """Client side: the state as the server last described it."""

    __slots__ = ("_fields", "value")

    def __init__(self, state_type: type[S]) -> None:
        self._fields = state_fields(state_type)
        #: the mirrored state object (starts as the type's default, as on the server)
        self.value: S = state_type()

    def apply(self, updates: list[StateUpdate]) -> list[int]:
        """Apply updates by index; returns the indexes applied.

        Unknown indexes are ignored (as the reference does); a field whose data
        does not decode is left as it was and logged.
        """
        applied = []
        for update in updates:
            if not 0 <= update.index < len(self._fields):
                continue
            name, codec = self._fields[update.index]
            try:
                value = codec.decode(update.data)
            except DecodeError as exc:
                log.warning("state field %s: undecodable update ignored: %s", name, exc)
                continue
            setattr(self.value, name, value)
            applied.append(update.index)
        return applied
