"""Keyword arguments on the plain clients of every adapter: mapped to the wire's positions,
with declared defaults filled in; a wrong keyword fails before anything is sent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from hl_harness import ADAPTERS, RunningServer, pinned_config

import hardlight_anyio
import hardlight_asyncio
import hardlight_threads
from hardlight_core import ClientEncodeError, Handler, Service, u32
from hardlight_support import ClientConfig, ServerConfig


class Calc(Service):
    async def sub(self, a: u32, b: u32 = 1) -> u32:
        raise NotImplementedError


class CalcHandler(Calc, Handler):
    async def sub(self, a: u32, b: u32 = 1) -> u32:
        return a - b


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = RunningServer("asyncio", ServerConfig.self_signed("localhost:0"), CalcHandler)
    try:
        yield running
    finally:
        running.stop(1.0)


def _config(server: RunningServer) -> ClientConfig:
    return pinned_config(server)  # type: ignore[no-any-return]


async def _async_calls(client: Any) -> list[Any]:
    results = [await client.sub(b=2, a=9), await client.sub(9), await client.call("sub", a=5)]
    with pytest.raises(ClientEncodeError):
        await client.sub(9, c=1)
    return results


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_keyword_calls(server: RunningServer, adapter: str) -> None:
    config = _config(server)
    if adapter == "asyncio":

        async def go_asyncio() -> list[Any]:
            async with hardlight_asyncio.Client(Calc, config) as client:
                return await _async_calls(client)

        results = asyncio.run(go_asyncio())
    elif adapter == "anyio":

        async def go_anyio() -> list[Any]:
            async with hardlight_anyio.Client(Calc, config) as client:
                return await _async_calls(client)

        results = anyio.run(go_anyio)
    else:
        with hardlight_threads.Client(Calc, config) as client:
            results = [client.sub(b=2, a=9), client.sub(9), client.call("sub", a=5)]
            with pytest.raises(ClientEncodeError):
                client.sub(9, c=1)
    assert results == [7, 8, 4]
