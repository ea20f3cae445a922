"""Live conformance: a uniform async client over any adapter, and the scenarios.

The scenarios come from the recorded reference sessions (counter_seed,
counter_full, compress_client_level*, concurrency_burst300, handshake_failures,
pet_seed, todo_seed, chat_seed). They work against a server of any port.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hardlight_core import (
    ClientConfig,
    ClientTLS,
    TooManyCallsInFlight,
    Topic,
)

from .apps import chat, counter, pet, todo

__all__ = ["ADAPTERS", "LiveClient", "Scenario", "client_tls", "run_scenarios", "scenarios_for"]

ADAPTERS = ("asyncio", "anyio", "threads")
WAIT = 10.0  # every wait of a scenario is bounded by this many seconds


def client_tls(insecure: bool, ca_file: str | None, fingerprint: str | None = None) -> ClientTLS:
    """The TLS policy the command line asked for."""
    if fingerprint:
        return ClientTLS.pinned(fingerprint)
    if ca_file:
        return ClientTLS(ca_file=ca_file)
    if insecure:
        return ClientTLS(insecure=True)
    return ClientTLS()


class LiveClient:
    """One client connection through the chosen adapter, with an async interface."""

    def __init__(self, adapter: str, service: type[Any], config: ClientConfig) -> None:
        self.adapter = adapter
        if adapter == "asyncio":
            import hardlight_asyncio

            self._client: Any = hardlight_asyncio.Client(service, config)
            self._blocking = False
        elif adapter == "anyio":
            import hardlight_anyio

            if not hasattr(hardlight_anyio, "Client"):
                raise SystemExit("the anyio adapter is not available in this build")
            self._client = hardlight_anyio.Client(service, config)
            self._blocking = False
        elif adapter == "threads":
            import hardlight_threads

            if not hasattr(hardlight_threads, "Client"):
                raise SystemExit("the threads adapter is not available in this build")
            self._client = hardlight_threads.Client(service, config)
            self._blocking = True
        else:
            raise SystemExit(f"unknown adapter {adapter!r}")
        self._events: asyncio.Queue[Any] = asyncio.Queue(10_000)
        self._pump: asyncio.Task[None] | None = None
        self._stop_pump = False

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._blocking:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return await fn(*args, **kwargs)

    async def connect(self) -> None:
        """Connect and start collecting events."""
        await self._run(self._client.connect)
        self._pump = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        if self._blocking:
            events = self._client.subscribe()
            while not self._stop_pump:
                event = await asyncio.to_thread(events.get, 0.2)
                if event is not None:
                    await self._events.put(event)
        else:
            async for event in self._client.subscribe():
                await self._events.put(event)

    async def call(self, method: str, *args: Any, timeout: float = WAIT) -> Any:
        """Call a method (raises the adapter's typed errors)."""
        if self._blocking:
            return await asyncio.to_thread(self._client.call, method, *args, timeout=timeout)
        return await self._client.call(method, *args, timeout=timeout)

    def state(self) -> Any:
        """The state mirror."""
        return self._client.state()

    async def next_event(self, event_type: Any, timeout: float = WAIT) -> tuple[Topic, Any]:
        """The next event (topic, decoded value); TimeoutError after ``timeout``."""
        event = await asyncio.wait_for(self._events.get(), timeout)
        return event.topic, event.decode(event_type)

    async def wait_state(self, predicate: Callable[[Any], bool], timeout: float = WAIT) -> Any:
        """Wait (bounded) until the mirror satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while not predicate(self.state()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"state never satisfied the check: {self.state()!r}")
            await asyncio.sleep(0.002)
        return self.state()

    async def disconnect(self) -> None:
        """Disconnect (bounded)."""
        self._stop_pump = True
        try:
            # asyncio.timeout, not wait_for: the anyio client must close in its own task
            async with asyncio.timeout(WAIT):
                await self._run(self._client.disconnect)
        finally:
            if self._pump is not None:
                self._pump.cancel()


@dataclass
class Context:
    """What every scenario gets: where to connect and how."""

    address: str
    tls: ClientTLS
    adapter: str
    compression_level: int
    expect_own_joined: bool

    def client(self, service: type[Any], level: int | None = None) -> LiveClient:
        """A new (not yet connected) client."""
        config = ClientConfig(
            address=self.address,
            tls=self.tls,
            compression_level=self.compression_level if level is None else level,
            call_timeout=WAIT,
            connect_timeout=WAIT,
        )
        return LiveClient(self.adapter, service, config)


class ScenarioFailed(Exception):
    """A scenario saw something other than what the reference does."""


def expect(condition: bool, what: str) -> None:
    """Fail the scenario with ``what`` unless ``condition``."""
    if not condition:
        raise ScenarioFailed(what)


Scenario = tuple[str, Callable[[Context], Awaitable[None]]]


# -- counter ------------------------------------------------------------------------------------


async def counter_seed(ctx: Context) -> None:
    """The README flow (counter_seed)."""
    client = ctx.client(counter.Counter)
    await client.connect()
    try:
        await client.call("new_counter")
        state = await client.wait_state(lambda s: bool(s.topic.inner))
        topic = state.topic
        expect(len(topic.inner) == 1 and not topic.is_string, f"topic shape: {topic!r}")
        seen: list[Any] = []
        await client.call("increment", 1)
        await client.call("decrement", 1)
        deadline = time.monotonic() + WAIT
        want = [counter.Incremented(to=1, from_=0), counter.Decremented(to=0, from_=1)]
        while not all(w in seen for w in want) or counter.ServerSentTest() not in seen:
            ev_topic, value = await client.next_event(
                counter.CounterEvent, max(0.01, deadline - time.monotonic())
            )
            expect(ev_topic == topic, f"event on {ev_topic}, expected {topic}")
            seen.append(value)
        expect(await client.call("get") == 0, "get() after +1-1 is not 0")
        expect(client.state().counter == 0, f"state mirror: {client.state()!r}")
    finally:
        await client.disconnect()


async def counter_levels(ctx: Context) -> None:
    """increment/decrement/get at compression levels 0, 1, 6, 9 (compress_client_level*)."""
    for level in (0, 1, 6, 9):
        client = ctx.client(counter.Counter, level)
        await client.connect()
        try:
            await client.call("new_counter")
            await client.call("increment", 4_000_000_000)
            await client.call("increment", 0)
            await client.call("decrement", 7)
            got = await client.call("get")
            expect(got == 3_999_999_993, f"level {level}: get() = {got}")
            await client.wait_state(lambda s: s.counter == 3_999_999_993)
        finally:
            await client.disconnect()


async def counter_burst(ctx: Context) -> None:
    """300 concurrent increments on one connection (concurrency_burst300)."""
    client = ctx.client(counter.Counter)
    await client.connect()
    try:
        await client.call("new_counter")
        results = await asyncio.gather(
            *(client.call("increment", 1) for _ in range(300)), return_exceptions=True
        )
        ok = sum(1 for r in results if r is None)
        bad = [r for r in results if r is not None and not isinstance(r, TooManyCallsInFlight)]
        expect(not bad, f"unexpected outcomes: {bad[:3]!r}")
        got = await client.call("get")
        expect(got == ok, f"get() = {got}, but {ok} increments succeeded")
    finally:
        await client.disconnect()


async def wrong_subprotocol(ctx: Context) -> None:
    """A handshake asking for hl/1 is answered 400 (handshake_failures)."""
    host, port = ClientConfig(address=ctx.address).host_port

    def probe() -> bytes:
        context = ctx.tls.ssl_context()
        with (
            socket.create_connection((host, port), timeout=WAIT) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            ctx.tls.check_peer(tls.getpeercert(binary_form=True))
            key = base64.b64encode(os.urandom(16)).decode()
            tls.sendall(
                (
                    f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\n"
                    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nx-hl-compress: 6\r\n"
                    "Sec-WebSocket-Protocol: hl/1\r\n\r\n"
                ).encode()
            )
            data = b""
            while b"\r\n" not in data:
                try:
                    chunk = tls.recv(4096)
                except (ssl.SSLError, OSError):
                    break
                if not chunk:
                    break
                data += chunk
            return data

    answer = await asyncio.to_thread(probe)
    status = answer.split(b"\r\n", 1)[0]
    expect(status.startswith(b"HTTP/1.1 400"), f"answer was {status!r}")


# -- pet, todo, chat ----------------------------------------------------------------------


async def pet_flow(ctx: Context) -> None:
    """Dog then cat with a long name, and the state mirror (pet_seed)."""
    client = ctx.client(pet.PetService)
    await client.connect()
    try:
        expect(await client.call("make_a_noise") is None, "a pet before becoming one")
        await client.call("become_dog", "Rex", 3, "German Shepherd")
        await client.wait_state(lambda s: s.pet == pet.Dog("Rex", 3, "German Shepherd"))
        expect(await client.call("make_a_noise") == "Rex says woof!", "dog noise")
        long_name = "Bartholomew the Magnificent " * 4
        await client.call("become_cat", long_name, 255, "Tabby")
        await client.wait_state(lambda s: s.pet == pet.Cat(long_name, 255, "Tabby"))
        expect(await client.call("make_a_noise") == f"{long_name} says meow!", "cat noise")
    finally:
        await client.disconnect()


async def todo_flow(ctx: Context) -> None:
    """create / mark / delete / get / get_all with dict results and the mirror (todo_seed)."""
    client = ctx.client(todo.Todo)
    await client.connect()
    try:
        texts = ["Buy milk", "Buy eggs", "Buy bread", "use arch btw", "Buy cheese"]
        ids = [await client.call("create", todo.Task(t)) for t in texts]
        expect(ids == [0, 1, 2, 3, 4], f"ids {ids}")
        everything = await client.call("get_all")
        expect(
            everything == {i: todo.Task(t) for i, t in zip(ids, texts, strict=True)},
            f"get_all {everything!r}",
        )
        await client.call("delete", [4])
        await client.call("mark_as_done", [0, 1])
        got = await client.call("get", [0, 1, 99])
        expect(
            got
            == {
                0: todo.Task("Buy milk", todo.TaskStatus.Done),
                1: todo.Task("Buy eggs", todo.TaskStatus.Done),
            },
            f"get {got!r}",
        )
        await client.call("delete_done_tasks")
        left = await client.call("get_all")
        expect(sorted(left) == [2, 3], f"after delete_done_tasks {left!r}")
        await client.wait_state(lambda s: sorted(s.tasks) == [2, 3] and s.next_id == 5)
        await client.call("delete_all")
        await client.wait_state(lambda s: s.tasks == {})
        expect(await client.call("get_all") == {}, "delete_all")
    finally:
        await client.disconnect()


async def chat_flow(ctx: Context) -> None:
    """Two clients in a fresh room (chat_seed)."""
    room = f"room{int.from_bytes(os.urandom(4), 'big')}"
    topic = Topic.from_str("chat-" + room)
    alice = ctx.client(chat.Chat)
    bob = ctx.client(chat.Chat)
    await alice.connect()
    await bob.connect()

    async def events_until(client: LiveClient, wanted: list[Any], optional: Any = None) -> None:
        seen: list[Any] = []
        deadline = time.monotonic() + WAIT
        while not all(w in seen for w in wanted):
            ev_topic, value = await client.next_event(
                chat.ChatEvent, max(0.01, deadline - time.monotonic())
            )
            expect(ev_topic == topic, f"event on {ev_topic}")
            seen.append(value)

    try:
        expect(await alice.call("join", room, "alice") == 0, "fresh room not empty")
        if ctx.expect_own_joined:
            await events_until(alice, [chat.Joined("alice")])
        expect(await bob.call("join", room, "bob") == 0, "room has messages before any")
        await events_until(alice, [chat.Joined("bob")])
        await events_until(bob, [chat.Joined("bob")])
        expect(await alice.call("send_message", "hi bob") == 1, "first seq")
        expect(await bob.call("send_message", "hello alice") == 2, "second seq")
        said = [
            chat.Said(chat.Message("alice", "hi bob", 1)),
            chat.Said(chat.Message("bob", "hello alice", 2)),
        ]
        await events_until(alice, said)
        await events_until(bob, said)
        history = await alice.call("history", 10)
        expect([m.text for m in history] == ["hi bob", "hello alice"], f"history {history!r}")
        expect(len(await alice.call("history", 1)) == 1, "history(1)")
        await bob.call("leave")
        await events_until(alice, [chat.Left("bob")])
        await alice.wait_state(lambda s: s.user == "alice" and s.room == topic and s.sent == 1)
        await bob.wait_state(lambda s: s.user == "bob" and s.room == Topic() and s.sent == 1)
    finally:
        await alice.disconnect()
        await bob.disconnect()


SCENARIOS: dict[str, list[Scenario]] = {
    "counter": [
        ("counter seed flow", counter_seed),
        ("compression levels 0/1/6/9", counter_levels),
        ("300 concurrent increments", counter_burst),
        ("wrong subprotocol answered 400", wrong_subprotocol),
    ],
    "pet": [("pet dog/cat flow", pet_flow)],
    "todo": [("todo flow", todo_flow)],
    "chat": [("chat two clients", chat_flow)],
}


def scenarios_for(app: str) -> list[Scenario]:
    """The scenarios of one app."""
    return SCENARIOS[app]


async def run_scenarios(ctx: Context, app: str, out: Callable[[str], None]) -> tuple[int, int]:
    """Run every scenario of ``app``; prints one line each; returns (passed, failed)."""
    passed = failed = 0
    for name, scenario in scenarios_for(app):
        try:
            await asyncio.wait_for(scenario(ctx), WAIT * 6)
        except Exception as exc:  # every failure is reported, none stops the run
            failed += 1
            out(f"FAIL {name}: {type(exc).__name__}: {exc}")
        else:
            passed += 1
            out(f"ok   {name}")
    return passed, failed
