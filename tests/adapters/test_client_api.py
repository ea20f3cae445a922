"""The client's user-facing API on every client adapter, over TLS: typed proxies
(``connect``, ``with_timeout``, ``client_of``, ``state(T)``), credentials (headers and
path on the upgrade, the refusal's reason, what the handler sees of them and of the
peer on every server runtime), the reconnect hook with the calls it holds, and
subscriptions that get every event, across a reconnect."""

from __future__ import annotations

import asyncio
import importlib
import socket
import threading
import time
from typing import Any

import msgspec
import pytest
from hl_harness import ADAPTERS, SERVER_RUNTIMES, Probe, ProbeHandler, RunningServer, running

from hardlight_core import (
    CallTimeout,
    ClientEncodeError,
    ConnectionRefused,
    Handler,
    HandshakeInfo,
    ReconnectPolicy,
    Refuse,
    Service,
    Topic,
    u16,
    u32,
)
from hardlight_support import ClientConfig, ClientTLS, ServerConfig, ServerTLS

WAIT = 10.0


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, WAIT * 3))


def _config(server: RunningServer, **options: Any) -> ClientConfig:
    fingerprint = server.config.fingerprint
    assert fingerprint is not None
    return ClientConfig.pinned(
        f"localhost:{server.port}", fingerprint, call_timeout=WAIT, connect_timeout=WAIT,
        **options,
    )


class Side:
    """One client of any adapter, driven from asyncio (threads: through to_thread)."""

    def __init__(self, adapter: str, service: type[Any], config: ClientConfig) -> None:
        self.adapter = adapter
        self.module: Any = importlib.import_module(f"hardlight_{adapter}")
        self.client: Any = self.module.Client(service, config)
        self.blocking = adapter == "threads"

    async def do(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.blocking:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return await fn(*args, **kwargs)

    async def connect(self) -> None:
        await self.do(self.client.connect)

    async def disconnect(self) -> None:
        await self.do(self.client.disconnect)

    async def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        return await self.do(self.client.call, method, *args, timeout=timeout)

    async def proxied(self, coroutine: Any) -> Any:
        """Await a proxy's call (threads: ``run`` it in a thread)."""
        if self.blocking:
            return await asyncio.to_thread(self.module.run, coroutine)
        return await coroutine

    async def next_event(self, subscription: Any, timeout: float = WAIT) -> Any:
        if self.blocking:
            return await asyncio.to_thread(subscription.get, timeout)
        return await subscription.get(timeout)


# -- typed proxies -----------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_proxy_calls_with_keywords_timeouts_and_a_typed_state(adapter: str) -> None:
    with running("asyncio", ServerConfig.self_signed("localhost:0"), RoomHandler) as server:
        side = Side(adapter, Room, _config(server))

        async def go() -> None:
            await side.connect()
            try:
                room = side.client.proxy
                assert isinstance(room, Room)
                assert side.module.client_of(room) is side.client
                assert await side.proxied(room.echo(7)) == 7
                assert await side.proxied(room.echo(x=8)) == 8  # keywords bind by name
                await side.proxied(room.join())
                state = side.client.state(RoomState)
                assert isinstance(state, RoomState) and state.joins == 1
                with pytest.raises(TypeError):
                    side.client.state(Said)  # not the service's state type
                with pytest.raises(ClientEncodeError):
                    await side.proxied(room.echo("seven"))  # type: ignore[arg-type]
                quick = side.module.with_timeout(room, 0.2)
                assert isinstance(quick, Room) and quick is not room
                with pytest.raises(CallTimeout):
                    await side.proxied(quick.nap(2000))  # the proxy's timeout applies
                assert await side.proxied(room.nap(10)) == 10  # the original keeps its own
            finally:
                await side.disconnect()

        _run(go())


@pytest.mark.parametrize("adapter", ("asyncio", "anyio"))
def test_connect_yields_a_proxy_and_disconnects_on_exit(adapter: str) -> None:
    with running("asyncio", ServerConfig.self_signed("localhost:0"), ProbeHandler) as server:
        module: Any = importlib.import_module(f"hardlight_{adapter}")

        async def go() -> None:
            async with module.connect(Probe, _config(server)) as probe:
                assert await probe.echo(5) == 5
                client = module.client_of(probe)
                assert client.connected
            assert not client.connected

        _run(go())


def test_threads_connect_yields_a_proxy_that_run_completes() -> None:
    import hardlight_threads

    with running("asyncio", ServerConfig.self_signed("localhost:0"), ProbeHandler) as server:
        with hardlight_threads.connect(Probe, _config(server)) as probe:
            assert hardlight_threads.run(probe.echo(6)) == 6
            client = hardlight_threads.client_of(probe)
            assert client.connected

            async def awaits() -> int:
                await asyncio.sleep(0)
                return 1

            with pytest.raises(TypeError):
                hardlight_threads.run(awaits())  # a coroutine that suspends is not a call
        assert not client.connected


# -- credentials -------------------------------------------------------------------------------


class Visitor(msgspec.Struct):
    # a struct, not a tuple: rkyv 0.7 cannot validate a tuple of two or more strings
    token: str  # the Authorization header
    path: str
    auth: str  # what authenticate returned
    host: str
    port: u16


class Door(Service):
    async def whoami(self) -> Visitor:
        raise NotImplementedError


class DoorHandler(Door, Handler):
    async def whoami(self) -> Visitor:
        handshake = self.handshake
        assert handshake is not None
        host, port = self.peer[0], self.peer[1]
        return Visitor(
            handshake.header("authorization") or "",
            handshake.path,
            str(self.auth),
            str(host),
            int(port),
        )


def _door_keeper(info: HandshakeInfo) -> str:
    if info.header("authorization") != "Bearer sesame":
        raise Refuse("bad token", 401)
    if info.path != "/door?room=7":
        raise Refuse(f"no door at {info.path}", 404)
    return "alice"


GOOD = {"headers": {"Authorization": "Bearer sesame"}, "path": "/door?room=7"}


@pytest.mark.parametrize("runtime", SERVER_RUNTIMES)
def test_the_handler_sees_the_token_the_path_and_the_peer(runtime: str) -> None:
    config = ServerConfig.self_signed("localhost:0", authenticate=_door_keeper)
    with running(runtime, config, DoorHandler) as server:
        side = Side("asyncio", Door, _config(server, **GOOD))

        async def go() -> tuple[Any, ...]:
            await side.connect()
            try:
                local = side.client._protocol.transport.get_extra_info("sockname")
                return (await side.call("whoami"), local)
            finally:
                await side.disconnect()

        seen, local = _run(go())
        assert (seen.token, seen.path, seen.auth) == ("Bearer sesame", "/door?room=7", "alice")
        assert (seen.host, seen.port) == ("127.0.0.1", local[1])  # the client's own socket


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_every_client_sends_headers_and_path_and_gets_the_refusal_reason(adapter: str) -> None:
    config = ServerConfig.self_signed("localhost:0", authenticate=_door_keeper)
    with running("asyncio", config, DoorHandler) as server:

        async def go() -> None:
            side = Side(adapter, Door, _config(server, **GOOD))
            await side.connect()
            try:
                seen = await side.call("whoami")
                assert (seen.token, seen.path) == ("Bearer sesame", "/door?room=7")
                assert seen.auth == "alice"
            finally:
                await side.disconnect()
            wrong = Side(adapter, Door, _config(server, headers={"Authorization": "Bearer x"}))
            with pytest.raises(ConnectionRefused) as refused:
                await wrong.connect()
            assert refused.value.status_code == 401
            assert refused.value.reason == "bad token"
            lost = Side(adapter, Door, _config(server, headers=GOOD["headers"], path="/cellar"))
            with pytest.raises(ConnectionRefused) as refused:
                await lost.connect()
            assert (refused.value.status_code, refused.value.reason) == (404, "no door at /cellar")

        _run(go())


@pytest.mark.parametrize(
    "options",
    [
        {"headers": {"Authorization": "Bearer a\r\nX-Evil: 1"}},
        {"headers": {"Bad Name": "x"}},
        {"headers": {"Host": "elsewhere"}},
        {"headers": {"Sec-WebSocket-Protocol": "hl/1"}},
        {"headers": {"X-Name": "caf\u00e9\u2603"}},
        {"path": "no-slash"},
        {"path": "/a b"},
        {"path": "/a\r\nX: 1"},
    ],
)
def test_client_config_refuses_headers_and_paths_that_would_break_the_request(
    options: dict[str, Any],
) -> None:
    with pytest.raises(ValueError):
        ClientConfig("localhost:1", **options)


def test_client_config_keeps_headers_as_pairs() -> None:
    config = ClientConfig("localhost:1", headers={"Authorization": "Bearer t", "X-A": "1"})
    assert config.headers == (("Authorization", "Bearer t"), ("X-A", "1"))
    assert config.upgrade_headers == ((b"Authorization", b"Bearer t"), (b"X-A", b"1"))
    assert ClientConfig("localhost:1", headers=config.headers) == config  # hashable, equal


# -- the reconnect hook and subscriptions ------------------------------------------------------


class Said(msgspec.Struct, frozen=True):
    n: u32


class RoomState(msgspec.Struct):
    joins: u32 = 0


ROOM = Topic.from_bytes(b"room")


class Room(Service):
    State = RoomState

    async def join(self) -> None:
        raise NotImplementedError

    async def say(self, n: u32) -> None:
        raise NotImplementedError

    async def echo(self, x: u32) -> u32:
        raise NotImplementedError

    async def nap(self, ms: u32) -> u32:
        raise NotImplementedError


class RoomHandler(Room, Handler):
    Event = Said

    async def join(self) -> None:
        self.subscribe(ROOM)
        self.state.joins += 1

    async def say(self, n: u32) -> None:
        self.emit(ROOM, Said(n))

    async def echo(self, x: u32) -> u32:
        return x

    async def nap(self, ms: u32) -> u32:
        import anyio

        await anyio.sleep(ms / 1000)
        return ms


async def _events(side: Side, subscription: Any, count: int) -> list[int]:
    got: list[int] = []
    for _ in range(count):
        event = await side.next_event(subscription)
        assert event is not None, f"only {got} arrived"
        got.append(event.decode(Said).n)
    return got


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_every_subscription_gets_every_event(adapter: str) -> None:
    with running("asyncio", ServerConfig.self_signed("localhost:0"), RoomHandler) as server:
        side = Side(adapter, Room, _config(server))

        async def go() -> None:
            await side.connect()
            try:
                subscriptions = [side.client.subscribe() for _ in range(3)]
                await side.call("join")
                for n in range(50):
                    await side.call("say", n)
                for subscription in subscriptions:
                    assert await _events(side, subscription, 50) == list(range(50))
            finally:
                await side.disconnect()
            for subscription in subscriptions:  # they end with the client
                assert await side.next_event(subscription, 1.0) is None

        _run(go())


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_reconnect_hook_runs_first_and_subscriptions_survive(adapter: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tls = ServerTLS.self_signed("localhost", "127.0.0.1")
    server_config = ServerConfig(host="127.0.0.1", port=port, tls=tls)
    first = RunningServer("asyncio", server_config, RoomHandler)
    config = ClientConfig(
        f"localhost:{port}",
        tls=ClientTLS.pinned(tls.fingerprint),
        call_timeout=WAIT,
        reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2, max_attempts=100),
    )
    side = Side(adapter, Room, config)
    hook_running = threading.Event()
    hook_calls: list[int] = []  # what the hook's own call returned
    hook_done: list[float] = []

    def blocking_hook(client: Any) -> None:
        hook_running.set()
        client.call("join")  # the hook's calls pass while others wait
        hook_calls.append(client.call("echo", 41))
        time.sleep(0.3)
        hook_done.append(time.monotonic())

    async def async_hook(client: Any) -> None:
        hook_running.set()
        await client.call("join")
        hook_calls.append(await client.call("echo", 41))
        await asyncio.sleep(0.3)
        hook_done.append(time.monotonic())

    hook: Any = blocking_hook if side.blocking else async_hook
    assert side.client.on_reconnect(hook) is hook

    async def go() -> None:
        await side.connect()
        subscriptions = [side.client.subscribe(), side.client.subscribe()]
        await side.call("join")
        await side.call("say", 1)
        await side.call("say", 2)
        for subscription in subscriptions:
            assert await _events(side, subscription, 2) == [1, 2]
        assert side.client.state(RoomState).joins == 1
        await asyncio.to_thread(first.stop, 0.5)
        second = await asyncio.to_thread(RunningServer, "asyncio", server_config, RoomHandler)
        try:
            assert await asyncio.to_thread(hook_running.wait, WAIT), "the hook never ran"
            # made while the hook runs: held until it returns, then sent
            assert await side.call("echo", 5) == 5
            answered = time.monotonic()
            assert hook_done and hook_done[0] <= answered, "a call went ahead of the hook"
            assert hook_calls == [41]
            # the hook re-subscribed: both iterators go on with the new connection's events
            await side.call("say", 3)
            for subscription in subscriptions:
                assert await _events(side, subscription, 1) == [3]
            # the mirror restarted from the new server's state: one join, the hook's
            assert side.client.state(RoomState).joins == 1
            assert len(hook_done) == 1
        finally:
            await side.disconnect()
            await asyncio.to_thread(second.stop, 0.5)

    _run(go())
