"""Application errors end to end, on every server adapter (anyio on both backends): a method
declared ``-> Result[T, E]`` answers ``Err(e)`` whether the handler returns it or raises
``AppError(e)``; the client's ``unwrap`` raises ``AppError`` carrying the decoded value. Any
other exception is ``HandlerPanicked`` on the client and its message is in the server's log.
Also the pieces of issue 14 a user meets first: defaults filled in by the client, str topics.
docs/errors.md's example is run as written."""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import sys
import types
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hl_harness import SERVER_RUNTIMES, RunningServer, pinned_config, run_bounded, running

from hardlight_asyncio import Client
from hardlight_core import (
    AppError,
    Err,
    EventDelivered,
    Handler,
    HandlerPanicked,
    Ok,
    Result,
    ServerEncodeError,
    Service,
    Variant,
    u32,
    u64,
    unwrap,
)
from hardlight_support import ClientConfig, ServerConfig

WAIT = 10.0
DOCS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


class BankError(enum.Enum):
    Insufficient = 0
    Frozen = 1


class OverLimit(Variant, frozen=True):
    max: u64


class Closed(Variant, frozen=True):
    pass


TransferError = OverLimit | Closed


class Moved(Variant, frozen=True):
    amount: u64


class Bank(Service):
    async def withdraw(self, amount: u64) -> Result[u64, BankError]: ...
    async def transfer(self, amount: u64) -> Result[None, TransferError]: ...
    async def freeze(self) -> Result[None, BankError]: ...
    async def audit(self, account: u32) -> u64: ...
    async def misuse(self) -> u64: ...
    async def wrong_error(self) -> Result[u64, BankError]: ...
    async def deposit(self, amount: u64, note: str = "cash") -> str: ...


class BankHandler(Bank, Handler):
    Event = Moved
    balance = 100

    async def withdraw(self, amount: u64) -> Result[u64, BankError]:
        if amount > self.balance:
            return Err(BankError.Insufficient)
        self.balance -= amount
        self.emit("moves", Moved(amount=amount))  # a str topic
        return Ok(self.balance)

    async def transfer(self, amount: u64) -> Result[None, TransferError]:
        if amount > 50:
            raise AppError(OverLimit(max=50))
        return Ok(None)

    async def freeze(self) -> Result[None, BankError]:
        self.subscribe("moves")
        raise AppError(BankError.Frozen)

    async def audit(self, account: u32) -> u64:
        raise LookupError(f"account {account} not found")

    async def misuse(self) -> u64:
        raise AppError(BankError.Frozen)  # not declared Result: a bug, answered as one

    async def wrong_error(self) -> Result[u64, BankError]:
        raise AppError("not a BankError")

    async def deposit(self, amount: u64, note: str = "cash") -> str:
        return f"{amount} {note}"


@pytest.fixture(params=SERVER_RUNTIMES)
def bank_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with running(request.param, ServerConfig.self_signed("localhost:0"), BankHandler) as server:
        yield server


def _config(server: RunningServer) -> ClientConfig:
    return pinned_config(server, WAIT)  # type: ignore[no-any-return]


def _run(coro: Awaitable[Any]) -> Any:
    return run_bounded(coro, WAIT * 3)


def test_returned_and_raised_app_errors_reach_the_client_typed(
    bank_server: RunningServer,
) -> None:
    async def go() -> None:
        async with Client(Bank, _config(bank_server)) as bank:
            assert await bank.withdraw(30) == Ok(70)
            assert (await bank.withdraw(20)).unwrap() == 50
            result = await bank.withdraw(1000)
            assert result == Err(BankError.Insufficient)
            with pytest.raises(AppError) as info:
                result.unwrap()
            assert info.value.error is BankError.Insufficient

            assert await bank.transfer(10) == Ok(None)
            refused = await bank.transfer(80)  # the handler raised AppError(OverLimit(...))
            assert refused == Err(OverLimit(max=50))
            with pytest.raises(AppError) as info:
                unwrap(refused)
            assert info.value.error == OverLimit(max=50)
            assert isinstance(info.value.error, OverLimit) and info.value.error.max == 50

            frozen = await bank.freeze()
            assert frozen == Err(BankError.Frozen)
            assert await bank.withdraw(5) == Ok(45)  # the connection goes on

    _run(go())


def test_other_exceptions_are_handler_panicked_and_their_message_is_logged(
    bank_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        async with Client(Bank, _config(bank_server)) as bank:
            with caplog.at_level(logging.ERROR, "hardlight"):
                with pytest.raises(HandlerPanicked) as info:
                    await bank.audit(12)
                assert "not found" not in str(info.value)  # the wire has no text
                with pytest.raises(HandlerPanicked):
                    await bank.misuse()
                with pytest.raises(ServerEncodeError):
                    await bank.wrong_error()
            assert await bank.withdraw(1) == Ok(99)

    _run(go())
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        re.match(
            r"handler Bank\.audit \(call \d+\) raised LookupError: account 12 not found; "
            r"answering HandlerPanicked",
            m,
        )
        for m in messages
    ), messages
    assert any("Bank.misuse" in m and "AppError needs the method declared" in m
               for m in messages), messages
    assert any("Bank.wrong_error" in m and "raised an AppError that does not encode" in m
               for m in messages), messages


def test_defaults_are_filled_in_and_str_topics_match(bank_server: RunningServer) -> None:
    async def go() -> None:
        async with Client(Bank, _config(bank_server)) as bank:
            assert await bank.deposit(5) == "5 cash"  # the declared default
            assert await bank.deposit(5, "cheque") == "5 cheque"
            events = bank.subscribe()
            assert await bank.freeze() == Err(BankError.Frozen)  # subscribes to "moves"
            assert await bank.withdraw(7) == Ok(93)
            event: EventDelivered = await asyncio.wait_for(events.__anext__(), WAIT)
            assert event.topic.matches("moves") and not event.topic.matches(b"moves")
            assert event.decode(Moved) == Moved(amount=7)

    _run(go())


def test_the_errors_doc_example_runs_as_written() -> None:
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (example,) = [b for b in blocks if "asyncio.run(main())" in b]
    module = types.ModuleType("errors_doc_example")  # a module, as a script is one
    sys.modules[module.__name__] = module
    try:
        exec(compile(example, str(DOCS), "exec"), module.__dict__)  # raises on any failure
    finally:
        del sys.modules[module.__name__]
    assert module.BankHandler.balance == 100
