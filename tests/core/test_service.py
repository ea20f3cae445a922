"""Service declarations: tags, call/return codecs, handler outcomes, state tracking."""

from __future__ import annotations

import enum
import logging
import pickle

import msgspec
import pytest

from hardlight_apps.counter import Counter, CounterHandler, CounterState
from hardlight_core import (
    AppError,
    DecodeError,
    Err,
    HardLightError,
    Ok,
    Result,
    RpcHandlerError,
    ServerEncodeError,
    StateUpdate,
    Topic,
    Variant,
    u8,
    u32,
    u64,
    unwrap,
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


# -- application errors: Result[T, E], AppError, unwrap ---------------------------------------


class BankError(enum.Enum):
    Insufficient = 0
    Frozen = 1


class Limit(Variant, frozen=True):
    max: u64


class Closed(Variant, frozen=True):
    pass


TransferError = Limit | Closed


class Bank(Service):
    async def withdraw(self, amount: u64) -> Result[u64, BankError]: ...
    async def transfer(self, amount: u64) -> Result[None, TransferError]: ...
    async def balance(self) -> u64: ...


def test_a_result_method_knows_its_error_type() -> None:
    spec = ServiceSpec.of(Bank)
    assert spec.method("withdraw").error_type is BankError
    assert spec.method("transfer").error_type == TransferError
    assert spec.method("balance").error_type is None


def test_raising_app_error_answers_like_returning_err() -> None:
    spec = ServiceSpec.of(Bank)
    withdraw = spec.method("withdraw")
    returned = outcome_to_output(spec, withdraw, Err(BankError.Frozen), None)
    raised = outcome_to_output(spec, withdraw, None, AppError(BankError.Frozen))
    assert raised == returned and isinstance(raised, Ok)
    assert spec.decode_return("withdraw", raised.value) == Err(BankError.Frozen)
    paid = outcome_to_output(spec, withdraw, Ok(5), None)
    assert isinstance(paid, Ok) and spec.decode_return("withdraw", paid.value) == Ok(5)
    transfer = spec.method("transfer")
    answer = outcome_to_output(spec, transfer, None, AppError(Limit(max=10)))
    assert isinstance(answer, Ok)
    assert spec.decode_return("transfer", answer.value) == Err(Limit(max=10))


def test_app_errors_that_cannot_be_sent_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    spec = ServiceSpec.of(Bank)
    with caplog.at_level(logging.ERROR, "hardlight"):
        wrong = outcome_to_output(spec, spec.method("withdraw"), None, AppError("nope"), 3)
        undeclared = outcome_to_output(spec, spec.method("balance"), None, AppError(1), 4)
    assert wrong == Err(RpcHandlerError.ServerEncodeError)
    assert undeclared == Err(RpcHandlerError.HandlerPanicked)
    first, second = (r.getMessage() for r in caplog.records)
    assert "Bank.withdraw (call 3) raised an AppError that" in first
    assert "does not encode as Ok[u64] | Err[BankError]" in first
    assert "Bank.balance (call 4) raised AppError" in second
    assert "AppError needs the method declared '-> Result[T, E]'" in second


def test_a_panicking_handler_is_logged_with_service_method_call_and_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = ServiceSpec.of(Bank)
    with caplog.at_level(logging.ERROR, "hardlight"):
        output = outcome_to_output(
            spec, spec.method("balance"), None, ValueError("account 12 not found"), 7
        )
    assert output == Err(RpcHandlerError.HandlerPanicked)
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith(
        "handler Bank.balance (call 7) raised ValueError: account 12 not found; "
        "answering HandlerPanicked"
    )
    assert "Result[T, E]" in message and record.exc_info is not None


def test_unwrap_returns_the_value_or_raises_app_error_with_the_decoded_error() -> None:
    ok: Result[u64, BankError] = Ok(5)
    err: Result[u64, BankError] = Err(BankError.Insufficient)
    assert ok.unwrap() == 5 and unwrap(ok) == 5
    with pytest.raises(AppError) as info:
        err.unwrap()
    assert info.value.error is BankError.Insufficient
    assert str(info.value) == "BankError.Insufficient"
    with pytest.raises(AppError) as info:
        unwrap(Err(Limit(max=3)))
    assert info.value.error == Limit(max=3) and isinstance(info.value, HardLightError)
    with pytest.raises(TypeError, match="unwrap\\(\\) takes an Ok or an Err, not int"):
        unwrap(5)  # type: ignore[arg-type]
    copy = pickle.loads(pickle.dumps(AppError(BankError.Frozen)))
    assert copy.error is BankError.Frozen
