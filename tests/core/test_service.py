"""Service declarations: tags, call/return codecs, handler outcomes, state tracking."""

from __future__ import annotations

import msgspec
import pytest

from hardlight_apps.counter import Counter, CounterHandler, CounterState
from hardlight_core import (
    DecodeError,
    Err,
    Ok,
    RpcHandlerError,
    ServerEncodeError,
    StateUpdate,
    Topic,
    u8,
    u32,
)
from hardlight_core._conn_state import StateMirror, StateTracker
from hardlight_core._service import Service, ServiceSpec, outcome_to_output


def test_tags_follow_declaration_order() -> None:
    spec = ServiceSpec.of(CounterHandler)  # a handler finds its service
    assert [(m.name, m.tag) for m in spec.methods] == [
        ("new_counter", 0), ("increment", 1), ("decrement", 2), ("get", 3)
    ]
    assert spec.encode_call("increment", 10) == bytes.fromhex("010000000a000000")
    method, args = spec.decode_call(bytes.fromhex("020000000a000000"))
    assert (method.name, args) == ("decrement", (10,))
    assert spec.decode_return("get", spec.encode_return("get", 7)) == 7
    assert spec.encode_return("new_counter", None) == b""


@pytest.mark.parametrize("internal", [b"", b"\x09" + b"\0" * 7, b"\x01\0\0"])
def test_bad_calls_are_decode_errors(internal: bytes) -> None:
    with pytest.raises(DecodeError):
        ServiceSpec.of(Counter).decode_call(internal)


def test_declarations_are_checked_when_defined() -> None:
    with pytest.raises(TypeError, match="needs a type"):

        class NoTypes(Service):
            async def f(self, x) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(TypeError, match="plain int"):

        class PlainInt(Service):
            async def f(self, x: int) -> None: ...


def test_outcomes() -> None:
    spec = ServiceSpec.of(Counter)
    get = spec.method("get")
    assert outcome_to_output(spec, get, 5, None) == Ok(b"\x05\0\0\0")
    assert outcome_to_output(spec, get, None, ValueError("x")) == Err(
        RpcHandlerError.HandlerPanicked
    )
    assert outcome_to_output(spec, get, None, ServerEncodeError()) == Err(
        RpcHandlerError.ServerEncodeError
    )
    assert outcome_to_output(spec, get, -1, None) == Err(RpcHandlerError.ServerEncodeError)


def test_tracker_sends_only_changed_fields() -> None:
    state = CounterState()
    tracker = StateTracker(CounterState)
    assert [u.index for u in tracker.changes(state)] == [0, 1]  # first sync: everything
    assert tracker.changes(state) == []  # increment(0): nothing
    state.counter = 3
    assert tracker.changes(state) == [StateUpdate(0, b"\x03\0\0\0")]
    state.topic = Topic.from_bytes(b"\x07")
    state.counter = 4
    assert [u.index for u in tracker.changes(state)] == [0, 1]


def test_mirror_applies_by_index_and_ignores_unknown() -> None:
    mirror = StateMirror(CounterState)
    applied = mirror.apply([StateUpdate(0, b"\x09\0\0\0"), StateUpdate(7, b""),
                            StateUpdate(1, b"\xff")])
    assert applied == [0]
    assert mirror.value.counter == 9 and mirror.value.topic == Topic()


def test_state_must_be_a_struct() -> None:
    class NotAStruct:
        x: u8 = 0

    with pytest.raises(TypeError):
        StateTracker(NotAStruct)


def test_in_place_changes_to_containers_are_seen() -> None:
    class Listy(msgspec.Struct):
        items: list[u32] = msgspec.field(default_factory=list)
        count: u32 = 0

    state = Listy()
    tracker = StateTracker(Listy)
    tracker.changes(state)
    state.items.append(7)  # same list object, new content
    assert [u.index for u in tracker.changes(state)] == [0]
    state.count = 1
    assert [u.index for u in tracker.changes(state)] == [1]
    state.count = 1
    assert tracker.changes(state) == []
