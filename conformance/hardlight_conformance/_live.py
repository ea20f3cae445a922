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
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hardlight_apps import chat, counter, pet, todo
from hardlight_core import CallTimeout, TooManyCallsInFlight, Topic
from hardlight_support import ClientConfig, ClientTLS

__all__ = [
    "ADAPTERS",
    "LiveClient",
    "Outcome",
    "Scenario",
    "client_tls",
    "run_scenarios",
    "scenarios_for",
    "summary",
    "topic_text",
]

ADAPTERS = ("asyncio", "anyio", "threads")
WAIT = 10.0  # every wait of a scenario is bounded by this many seconds (``check --wait``)
# How long after its join a client may still receive its own ``Joined`` before ``check`` calls
# it lost. Counted from the join's answer and checked at the end of the scenario, so a run that
# got the event never waits for it; a lost one costs at most this much.
OWN_EVENT_GRACE = 2.0
# What the recorded reference does (data/traffic/README.md, "What the reference does", 14).
OWN_EVENT_AFTER_SUBSCRIBE = (
    "documented reference behaviour: an event that a handler emits right after subscribing its "
    "own connection reached that connection in some runs and not in others, because the "
    "subscription travels through another task (data/traffic/README.md, fact 14)"
)


def topic_text(topic: Topic) -> str:
    """A topic as a reader knows it: ``'chat-room'`` for string topics, hex bytes otherwise."""
    if topic.is_string:
        return repr(topic.inner.decode("utf-8", "replace"))
    return f"0x{topic.inner.hex()}" if topic.inner else "<default topic>"


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

    def __init__(
        self, adapter: str, service: type[Any], config: ClientConfig, name: str = "the client"
    ) -> None:
        self.adapter = adapter
        #: how failure messages name this client ("client A")
        self.name = name
        self.address = config.address
        self._wait = config.call_timeout if config.call_timeout is not None else WAIT
        self._connect_wait = config.connect_timeout
        #: every event taken off the queue by :meth:`wait_events`, decoded: (topic, value)
        self.seen: list[tuple[Topic, Any]] = []
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
        try:
            await self._run(self._client.connect)
        except TimeoutError as exc:
            raise TimeoutError(
                f"waited {self._connect_wait:.1f} s for {self.name} to connect to "
                f"{self.address} (TCP, TLS and the WebSocket upgrade)"
                + (f": {exc}" if str(exc) else "")
            ) from exc
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

    async def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call a method (raises the adapter's typed errors).

        A ``CallTimeout`` keeps its type and says which client waited for which call.
        """
        if timeout is None:
            timeout = self._wait
        try:
            if self._blocking:
                return await asyncio.to_thread(self._client.call, method, *args, timeout=timeout)
            return await self._client.call(method, *args, timeout=timeout)
        except CallTimeout as exc:
            shown = ", ".join(repr(a) for a in args)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            raise CallTimeout(
                f"waited {timeout:.1f} s for {self.name}'s answer to {method}({shown})"
                + (f": {exc}" if str(exc) else "")
            ) from exc

    def state(self) -> Any:
        """The state mirror."""
        return self._client.state()

    async def next_event(self, event_type: Any, timeout: float | None = None) -> tuple[Topic, Any]:
        """The next event (topic, decoded value); TimeoutError after ``timeout``."""
        if timeout is None:
            timeout = self._wait
        try:
            event = await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            raise TimeoutError(f"waited {timeout:.1f} s for {self.name}'s next event") from None
        return event.topic, event.decode(event_type)

    def has_events(self, wanted: list[Any], topic: Topic | None = None) -> list[Any]:
        """Which of ``wanted`` (event values, repeats counted) :attr:`seen` lacks."""
        pool = [value for ev_topic, value in self.seen if topic is None or ev_topic == topic]
        missing = []
        for value in wanted:
            if value in pool:
                pool.remove(value)
            else:
                missing.append(value)
        return missing

    def take_events(self, event_type: Any) -> None:
        """Move the events already received into :attr:`seen` (no waiting)."""
        while not self._events.empty():
            event = self._events.get_nowait()
            self.seen.append((event.topic, event.decode(event_type)))

    async def wait_events(
        self,
        event_type: Any,
        wanted: list[Any],
        *,
        topic: Topic | None = None,
        after: str,
        timeout: float | None = None,
    ) -> None:
        """Wait (bounded) until :attr:`seen` holds every value of ``wanted``, on ``topic``.

        Events seen before count too. On timeout the TimeoutError names the client, the missing
        events, the topic, what they should follow (``after``) and what did arrive.
        """
        if timeout is None:
            timeout = self._wait
        deadline = time.monotonic() + timeout
        while True:
            self.take_events(event_type)
            missing = self.has_events(wanted, topic)
            if not missing:
                return
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                event = await asyncio.wait_for(self._events.get(), remaining)
            except TimeoutError:
                raise TimeoutError(self._waited_for(timeout, missing, topic, after)) from None
            self.seen.append((event.topic, event.decode(event_type)))

    def _waited_for(
        self, timeout: float, missing: list[Any], topic: Topic | None, after: str
    ) -> str:
        noun = "event" if len(missing) == 1 else "events"
        what = ", ".join(repr(m) for m in missing)
        where = f" on topic {topic_text(topic)}" if topic is not None else ""
        got = "; ".join(f"{v!r} on {topic_text(t)}" for t, v in self.seen[-6:])
        return (
            f"waited {timeout:.1f} s for {self.name}'s {noun} {what}{where} after {after}; "
            f"it got {len(self.seen)} event(s)" + (f", the last: {got}" if got else "")
        )

    async def wait_state(
        self,
        predicate: Callable[[Any], bool],
        timeout: float | None = None,
        what: str = "the expected value",
    ) -> Any:
        """Wait (bounded) until the mirror satisfies ``predicate`` (``what`` describes it)."""
        if timeout is None:
            timeout = self._wait
        deadline = time.monotonic() + timeout
        while not predicate(self.state()):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"waited {timeout:.1f} s for {self.name}'s state mirror to show {what}; "
                    f"it shows {self.state()!r}"
                )
            await asyncio.sleep(0.002)
        return self.state()

    async def disconnect(self) -> None:
        """Disconnect (bounded)."""
        self._stop_pump = True
        try:
            # asyncio.timeout, not wait_for: the anyio client must close in its own task
            async with asyncio.timeout(self._wait) as scope:
                await self._run(self._client.disconnect)
        except TimeoutError as exc:
            if str(exc) and not scope.expired():
                raise
            raise TimeoutError(
                f"waited {self._wait:.1f} s for {self.name} to disconnect from {self.address}"
            ) from exc
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
    #: chat: a client's own ``Joined`` is required (ours sends it); without this a lost one is
    #: reported as the documented reference divergence
    expect_own_joined: bool = False
    #: the bound of every single wait (connect, call, event, state, disconnect)
    wait: float = WAIT
    #: the documented reference divergences the running scenario saw (one line each)
    divergences: list[str] = field(default_factory=list)

    def client(
        self, service: type[Any], level: int | None = None, name: str = "the client"
    ) -> LiveClient:
        """A new (not yet connected) client; ``name`` is how failure messages call it."""
        config = ClientConfig(
            address=self.address,
            tls=self.tls,
            compression_level=self.compression_level if level is None else level,
            call_timeout=self.wait,
            connect_timeout=self.wait,
        )
        return LiveClient(self.adapter, service, config, name)

    def diverge(self, what: str, why: str) -> None:
        """Note a documented reference behaviour that the scenario saw instead of ours."""
        self.divergences.append(f"{what} ({why})")


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
    client = ctx.client(counter.Counter, name="the counter client")
    await client.connect()
    try:
        await client.call("new_counter")
        state = await client.wait_state(
            lambda s: bool(s.topic.inner), what="a topic after new_counter()"
        )
        topic = state.topic
        expect(len(topic.inner) == 1 and not topic.is_string, f"topic shape: {topic!r}")
        await client.call("increment", 1)
        await client.call("decrement", 1)
        want = [
            counter.ServerSentTest(),
            counter.Incremented(to=1, from_=0),
            counter.Decremented(to=0, from_=1),
        ]
        await client.wait_events(
            counter.CounterEvent,
            want,
            topic=topic,
            after="new_counter(), increment(1), decrement(1)",
            timeout=ctx.wait,
        )
        stray = [(t, v) for t, v in client.seen if t != topic]
        expect(not stray, f"events on other topics than {topic_text(topic)}: {stray!r}")
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
            await client.wait_state(
                lambda s: s.counter == 3_999_999_993,
                what=f"counter == 3999999993 at level {level}",
            )
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
        try:
            raw = socket.create_connection((host, port), timeout=ctx.wait)
        except TimeoutError as exc:
            raise TimeoutError(
                f"waited {ctx.wait:.1f} s for a TCP connection to {host}:{port} "
                "(hl/1 handshake probe)"
            ) from exc
        try:
            tls = context.wrap_socket(raw, server_hostname=host)
        except TimeoutError as exc:
            raw.close()
            raise TimeoutError(
                f"waited {ctx.wait:.1f} s for the TLS handshake with {host}:{port} "
                "(hl/1 handshake probe)"
            ) from exc
        with raw, tls:
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
                except TimeoutError as exc:
                    raise TimeoutError(
                        f"waited {ctx.wait:.1f} s for the HTTP answer to a handshake asking "
                        f"for subprotocol hl/1; got {data!r}"
                    ) from exc
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
        await client.wait_state(
            lambda s: s.pet == pet.Dog("Rex", 3, "German Shepherd"), what="the dog Rex"
        )
        expect(await client.call("make_a_noise") == "Rex says woof!", "dog noise")
        long_name = "Bartholomew the Magnificent " * 4
        await client.call("become_cat", long_name, 255, "Tabby")
        await client.wait_state(lambda s: s.pet == pet.Cat(long_name, 255, "Tabby"), what="the cat")
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
        await client.wait_state(
            lambda s: sorted(s.tasks) == [2, 3] and s.next_id == 5,
            what="tasks 2, 3 and next_id 5 after delete_done_tasks()",
        )
        await client.call("delete_all")
        await client.wait_state(lambda s: s.tasks == {}, what="no tasks after delete_all()")
        expect(await client.call("get_all") == {}, "delete_all")
    finally:
        await client.disconnect()


async def chat_flow(ctx: Context) -> None:
    """Two clients in a fresh room (chat_seed).

    Every event is required except a client's own ``Joined`` right after its join subscribed
    it: the reference may lose that one (README fact 14). Unless ``ctx.expect_own_joined``, a
    lost own ``Joined`` is a divergence, not a failure; it is judged at the end, so waiting for
    it costs nothing when it came and at most ``OWN_EVENT_GRACE`` when it did not.
    """
    room = f"room{int.from_bytes(os.urandom(4), 'big')}"
    topic = Topic.from_str("chat-" + room)
    alice = ctx.client(chat.Chat, name="client A (alice)")
    bob = ctx.client(chat.Chat, name="client B (bob)")
    await alice.connect()
    await bob.connect()
    own_joined: list[tuple[LiveClient, Any, float]] = []  # (client, event, when its join answered)

    async def require(client: LiveClient, wanted: list[Any], after: str) -> None:
        await client.wait_events(chat.ChatEvent, wanted, topic=topic, after=after, timeout=ctx.wait)
        stray = [(t, v) for t, v in client.seen if t != topic]
        expect(not stray, f"{client.name} got events on other topics: {stray!r}")

    async def join(client: LiveClient, user: str) -> None:
        got = await client.call("join", room, user)
        expect(got == 0, f"{client.name}: join() = {got}, the room should have no messages yet")
        own = chat.Joined(user)
        if ctx.expect_own_joined:
            await require(client, [own], f"its own join({room!r}, {user!r})")
        else:
            own_joined.append((client, own, time.monotonic()))

    try:
        await join(alice, "alice")
        await join(bob, "bob")
        await require(alice, [chat.Joined("bob")], f"B's join({room!r}, 'bob')")
        expect(await alice.call("send_message", "hi bob") == 1, "first seq")
        expect(await bob.call("send_message", "hello alice") == 2, "second seq")
        said = [
            chat.Said(chat.Message("alice", "hi bob", 1)),
            chat.Said(chat.Message("bob", "hello alice", 2)),
        ]
        sends = "A's send_message('hi bob') and B's send_message('hello alice')"
        await require(alice, said, sends)
        await require(bob, said, sends)
        history = await alice.call("history", 10)
        expect([m.text for m in history] == ["hi bob", "hello alice"], f"history {history!r}")
        expect(len(await alice.call("history", 1)) == 1, "history(1)")
        await bob.call("leave")
        await require(alice, [chat.Left("bob")], "B's leave()")
        await alice.wait_state(
            lambda s: s.user == "alice" and s.room == topic and s.sent == 1,
            what=f"user 'alice', room {topic_text(topic)}, sent 1",
        )
        await bob.wait_state(
            lambda s: s.user == "bob" and s.room == Topic() and s.sent == 1,
            what="user 'bob', the default room after leave(), sent 1",
        )
        for client, own, joined_at in own_joined:
            grace = max(0.0, joined_at + OWN_EVENT_GRACE - time.monotonic())
            try:
                await client.wait_events(
                    chat.ChatEvent, [own], topic=topic, after="its own join", timeout=grace
                )
            except TimeoutError:
                ctx.diverge(
                    f"own-event-after-subscribe lost: {client.name} never got its own {own!r} "
                    f"on topic {topic_text(topic)} within {OWN_EVENT_GRACE:.1f} s of its join's "
                    "answer",
                    OWN_EVENT_AFTER_SUBSCRIBE,
                )
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


class Outcome(NamedTuple):
    """What :func:`run_scenarios` counted."""

    passed: int
    failed: int
    divergences: int  # documented reference behaviours seen by scenarios that passed


def summary(outcome: Outcome) -> str:
    """``N passed, M failed`` (and ``, D divergence(s)`` when there were any)."""
    line = f"{outcome.passed} passed, {outcome.failed} failed"
    if outcome.divergences:
        noun = "divergence" if outcome.divergences == 1 else "divergences"
        line += f", {outcome.divergences} {noun}"
    return line


async def run_scenarios(ctx: Context, app: str, out: Callable[[str], None]) -> Outcome:
    """Run every scenario of ``app``; prints one line each, plus one per divergence."""
    passed = failed = diverged = 0
    for name, scenario in scenarios_for(app):
        ctx.divergences.clear()
        # each wait inside is bounded by ctx.wait; this only stops a scenario stuck elsewhere
        overall = ctx.wait * 6 + OWN_EVENT_GRACE
        try:
            async with asyncio.timeout(overall) as scope:
                await scenario(ctx)
        except Exception as exc:  # every failure is reported, none stops the run
            failed += 1
            if isinstance(exc, TimeoutError) and scope.expired():
                exc = TimeoutError(f"the whole scenario took longer than {overall:.1f} s")
            out(f"FAIL {name}: {type(exc).__name__}: {str(exc) or '(no message)'}")
        else:
            passed += 1
            out(f"ok   {name}")
            for divergence in ctx.divergences:
                diverged += 1
                out(f"DIVERGENCE {name}: {divergence}")
    return Outcome(passed, failed, diverged)
