"""The anyio adapter on the trio backend: server and client both on trio."""

from __future__ import annotations

import anyio
import pytest
from hl_harness import Probe, ProbeHandler

from hardlight_anyio import Client, Server
from hardlight_apps.counter import (
    Counter,
    CounterEvent,
    CounterHandler,
    Decremented,
    Incremented,
    ServerSentTest,
)
from hardlight_core import CallTimeout, HandlerPanicked, HardLightError
from hardlight_core._topics import TopicCreated, TopicRemoved
from hardlight_support import ClientConfig, ServerConfig


async def _seed_flow() -> list[object]:
    config = ServerConfig.self_signed("localhost:0")
    assert config.fingerprint is not None
    seen: list[object] = []
    changes: list[object] = []
    async with Server(config, CounterHandler) as server, anyio.create_task_group() as tg:
        emitter = server.event_emitter(CounterEvent)
        notifier = server.topic_notifier()
        with pytest.raises(HardLightError):
            server.topic_notifier()

        async def notify() -> None:
            async for change in notifier:
                changes.append(change)
                if isinstance(change, TopicCreated):
                    await emitter.emit(change.topic, ServerSentTest())

        tg.start_soon(notify)
        pinned = ClientConfig.pinned(f"localhost:{server.port}", config.fingerprint)
        async with Client(Counter, pinned) as client:
            done = anyio.Event()

            async def receive() -> None:
                async for event in client.subscribe():
                    seen.append(event.decode(CounterEvent))
                    if len(seen) == 3:
                        done.set()

            tg.start_soon(receive)
            await client.new_counter()
            assert client.state().topic.inner  # state change arrives before the response
            await client.increment(1)
            await client.decrement(1)
            with anyio.fail_after(10):
                await done.wait()
            assert await client.get() == 0
            assert client.state().counter == 0
        with anyio.fail_after(10):
            while not any(isinstance(c, TopicRemoved) for c in changes):
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    return seen


def test_seed_flow_on_trio() -> None:
    seen = anyio.run(_seed_flow, backend="trio")
    assert ServerSentTest() in seen
    assert Incremented(to=1, from_=0) in seen
    assert Decremented(to=0, from_=1) in seen


async def _errors() -> None:
    config = ServerConfig.self_signed("localhost:0")
    assert config.fingerprint is not None
    async with Server(config, ProbeHandler) as server:
        pinned = ClientConfig.pinned(f"localhost:{server.port}", config.fingerprint)
        async with Client(Probe, pinned) as client:
            with pytest.raises(HandlerPanicked):
                await client.boom()
            with pytest.raises(CallTimeout):
                await client.wait(2000, timeout=0.2)
            assert await client.echo(5) == 5


def test_errors_and_timeouts_on_trio() -> None:
    anyio.run(_errors, backend="trio")
