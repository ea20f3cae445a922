"""A worker hub and two servers on its bus in this process: events cross exactly once,
an outage of the hub leaves local delivery working, and a new hub is rejoined."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from workersvc import PidHandler, Pids

import hardlight_anyio
import hardlight_threads
from hardlight_asyncio import Client, Server, WorkerBus, WorkerHub
from hardlight_core import Topic, TopicCreated, u32
from hardlight_support import BusUnavailable, ClientConfig, ServerConfig

WAIT = 10.0
ROOM = Topic.from_str("room")


@contextlib.asynccontextmanager
async def serving(kind: str, path: str) -> AsyncIterator[tuple[int, WorkerBus, Any]]:
    """A server of ``kind`` on the hub at ``path``: (port, its bus, the server)."""
    bus = WorkerBus(path)
    config = ServerConfig.plain("127.0.0.1:0")
    if kind == "asyncio":
        server = Server(config, PidHandler, bus=bus)
        await server.start()
        try:
            yield server.port, bus, server
        finally:
            await server.stop(0.5)
    elif kind == "threads":
        tserver = hardlight_threads.Server(config, PidHandler, bus=bus)
        await asyncio.to_thread(tserver.start)
        try:
            yield tserver.port, bus, tserver
        finally:
            await asyncio.to_thread(tserver.stop, 0.5)
    else:
        async with hardlight_anyio.Server(config, PidHandler, bus=bus) as aserver:
            yield aserver.port, bus, aserver
            await aserver.stop(0.5)


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {WAIT} s: {what}")
        await asyncio.sleep(0.02)


async def client(port: int) -> Client[Any]:
    c = Client(Pids, ClientConfig(f"127.0.0.1:{port}", plaintext=True, call_timeout=WAIT))
    await c.connect()
    return c


async def values(sub: Any, quiet: float = 0.3) -> list[int]:
    """Every event value received until none came for ``quiet`` seconds."""
    got = []
    while (event := await sub.get(quiet)) is not None:
        got.append(event.decode(u32))
    return got


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize("other", ["asyncio", "threads", "anyio"])
def test_events_cross_workers_exactly_once(other: str) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "hub.sock")
            hub = WorkerHub(path)
            await hub.start()
            try:
                async with serving("asyncio", path) as (port1, bus1, server1), serving(
                    other, path
                ) as (port2, bus2, _server2):
                    notifier = server1.topic_notifier()
                    sub1, sub2, emitter = await client(port1), await client(port2), await client(
                        port2
                    )
                    events1, events2 = sub1.subscribe(), sub2.subscribe()
                    await sub1.join("room")
                    await sub2.join("room")
                    await until(lambda: len(hub.router.subscribers(ROOM)) == 2, "interest")
                    # per node: server 1 reports its own subscriber only
                    assert await notifier.get(WAIT) == TopicCreated(ROOM)
                    assert await notifier.get(0.2) is None

                    await emitter.shout("room", 7)  # on server 2
                    await sub1.shout("room", 8)  # on server 1
                    assert sorted(await values(events1)) == [7, 8]
                    assert sorted(await values(events2)) == [7, 8]
                    assert bus1.received == 1 and bus2.received == 1
                    assert hub.forwarded == 2 and hub.dropped == 0

                    # the last subscriber of server 2 leaves: the hub stops sending there
                    await sub2.disconnect()
                    await until(lambda: len(hub.router.subscribers(ROOM)) == 1, "removed")
                    await sub1.shout("room", 9)
                    assert await values(events1) == [9]
                    assert hub.forwarded == 2
                    for c in (sub1, emitter):
                        await c.disconnect()
            finally:
                await hub.close()

    run(main)


def test_a_hub_outage_keeps_local_delivery_and_a_new_hub_is_rejoined(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "hub.sock")
            hub = WorkerHub(path)
            await hub.start()
            async with serving("asyncio", path) as (port1, bus1, _s1), serving(
                "asyncio", path
            ) as (port2, _bus2, _s2):
                sub1, sub2 = await client(port1), await client(port2)
                events1, events2 = sub1.subscribe(), sub2.subscribe()
                await sub1.join("room")
                await sub2.join("room")
                await until(lambda: len(hub.router.subscribers(ROOM)) == 2, "interest")

                await hub.close()
                await until(lambda: "connection lost" in caplog.text, "the outage logged")
                await sub1.shout("room", 1)  # local delivery goes on
                assert await values(events1) == [1]
                assert await values(events2) == []
                assert bus1.dropped == 1
                assert "unreachable" in caplog.text

                hub = WorkerHub(path)  # the same socket path: the buses reconnect
                await hub.start()
                await until(lambda: len(hub.router.subscribers(ROOM)) == 2, "interest again")
                await sub2.shout("room", 2)
                assert await values(events1) == [2]
                assert await values(events2) == [2]
                for c in (sub1, sub2):
                    await c.disconnect()
            await hub.close()

    caplog.set_level("INFO", logger="hardlight")
    run(main)
    assert "worker hub connection restored" in caplog.text


def test_no_hub_at_start_is_bus_unavailable() -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(
                ServerConfig.plain("127.0.0.1:0"), PidHandler, bus=WorkerBus(f"{tmp}/none.sock")
            )
            with pytest.raises(BusUnavailable, match="worker hub"):
                await server.start()

    run(main)
    with pytest.raises(BusUnavailable, match="outside a worker"):
        WorkerBus()


def test_a_worker_that_does_not_read_gets_no_more_than_the_bound() -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "hub.sock")
            hub = WorkerHub(path, max_buffer=64 * 1024)
            await hub.start()
            from hardlight_support._hub import encode_event, encode_hello, encode_interest

            # a raw client that subscribes and never reads, and a sender
            _r1, w1 = await asyncio.open_unix_connection(path)
            w1.write(encode_hello(b"S" * 8) + encode_interest(ROOM, True))
            _r2, w2 = await asyncio.open_unix_connection(path)
            w2.write(encode_hello(b"E" * 8))
            await until(lambda: len(hub.router.subscribers(ROOM)) == 1, "interest")
            frame = encode_event(b"E" * 8, ROOM, b"x" * 60_000)
            for _ in range(400):  # 24 MB: far past the socket buffers and the bound
                w2.write(frame)
                await w2.drain()
            await until(lambda: hub.forwarded + hub.dropped == 400, "all 400 handled")
            assert hub.dropped > 0
            assert hub.forwarded * len(frame) < 64 * 1024 + 8 * 1024 * 1024  # bound + kernel
            w1.close()
            w2.close()
            await hub.close()

    run(main)
