"""hardlight_asgi.HardLightApp under real ASGI servers (uvicorn, hypercorn on asyncio and trio),
TLS terminated by the ASGI server, against our asyncio, anyio and threads clients."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from asgi_harness import AsgiServer, insecure_context, raw_upgrade, serving

import hardlight_anyio
import hardlight_asyncio
import hardlight_threads
from hardlight_apps.counter import (
    Counter,
    CounterEvent,
    CounterHandler,
    Decremented,
    Incremented,
    ServerSentTest,
)
from hardlight_asgi import HardLightApp, Refuse
from hardlight_core import (
    ClientNotConnected,
    ConnectionRefused,
    Handler,
    HandlerPanicked,
    HandshakeInfo,
    RPCRequest,
    RPCResponse,
    ServerEncodeError,
    Service,
    TopicCreated,
    TopicRemoved,
    pack,
    u8,
    u32,
    unpack_server_message,
)
from hardlight_core._service import ServiceSpec
from hardlight_core._types import Ok
from hardlight_support import ClientConfig

#: servers on which the reference's ``hl/2`` reaches the app (see test_uvicorn_websockets...)
HL2_SERVERS = ["uvicorn-wsproto", "hypercorn", "hypercorn-trio"]
WAIT = 10.0


class Probe(Service):
    async def echo(self, x: u32) -> u32: ...
    async def boom(self) -> None: ...
    async def wait(self, ms: u32) -> u32: ...
    async def bad_return(self) -> u8: ...
    async def exit(self) -> None: ...


class ProbeHandler(Probe, Handler):
    async def echo(self, x: u32) -> u32:
        return x

    async def boom(self) -> None:
        raise ValueError("the handler broke")

    async def wait(self, ms: u32) -> u32:
        await anyio.sleep(ms / 1000)
        return ms

    async def bad_return(self) -> u8:
        return 300  # does not fit a u8

    async def exit(self) -> None:
        raise SystemExit(3)  # not an Exception: must not take the ASGI server down


def _config(server: AsgiServer, **kwargs: Any) -> ClientConfig:
    return ClientConfig.pinned(server.address, server.fingerprint, **kwargs)


def _greeter(app: HardLightApp, seen: list[object]) -> Any:
    """The counter example's notifier reaction: ServerSentTest to every new topic."""
    emitter = app.event_emitter(CounterEvent)
    notifier = app.topic_notifier()

    async def greet() -> None:
        async for change in notifier:
            seen.append(change)
            if isinstance(change, TopicCreated):
                await emitter.emit(change.topic, ServerSentTest())

    return greet


def _wait_until(condition: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        time.sleep(0.01)


# ------------------------------------------------------------------------- handshake


@pytest.mark.parametrize("kind", HL2_SERVERS)
def test_handshake_negotiation_and_refusals(kind: str, tmp_path: Path) -> None:
    app = HardLightApp(CounterHandler, allowed_origins={"https://ok.test"})
    with serving(app, kind, tmp_path) as server:
        port = server.port
        status, headers, _ = raw_upgrade(
            port, {"Sec-WebSocket-Protocol": "hl/2", "X-HL-Compress": "3"}
        )
        assert status == 101
        assert headers["sec-websocket-protocol"] == "hl/2"
        assert headers["x-hl-compress"] == "3"
        for sent, echoed in (("abc", "6"), ("10", "6"), ("+7", "7"), (None, "6")):
            extra = {"Sec-WebSocket-Protocol": "hl/2"}
            if sent is not None:
                extra["X-HL-Compress"] = sent
            status, headers, _ = raw_upgrade(port, extra)
            assert (status, headers["x-hl-compress"]) == (101, echoed), sent
        status, headers, _ = raw_upgrade(port, {"Sec-WebSocket-Protocol": "hl.2"})
        assert (status, headers["sec-websocket-protocol"]) == (101, "hl.2")
        for offered in ("hl/1", "hl/1, hl/2", None):
            extra = {} if offered is None else {"Sec-WebSocket-Protocol": offered}
            status, _, body = raw_upgrade(port, extra)
            assert status == 400, offered
            assert b"subprotocol must be exactly hl/2" in body
        status, _, body = raw_upgrade(
            port, {"Sec-WebSocket-Protocol": "hl/2", "Origin": "https://evil.test"}
        )
        assert (status, body) == (403, b"origin https://evil.test is not allowed")
        status, _, _ = raw_upgrade(
            port, {"Sec-WebSocket-Protocol": "hl.2", "Origin": "https://ok.test"}
        )
        assert status == 101
        _wait_until(lambda: app.connection_count == 0, "the raw sockets to be forgotten")


def test_plain_http_request_gets_426(tmp_path: Path) -> None:
    import http.client

    app = HardLightApp(CounterHandler)
    with serving(app, "hypercorn", tmp_path) as server:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", server.port, context=insecure_context(), timeout=WAIT
        )
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 426
        assert b"HardLight" in response.read()
        conn.close()


def test_uvicorn_websockets_implementation_accepts_only_the_browser_alias(tmp_path: Path) -> None:
    # uvicorn's default WebSocket implementation (the websockets library) parses the
    # subprotocol header as RFC 6455 tokens and answers "hl/2" with 400 before the app
    # runs; "hl.2" works. Run uvicorn with ws="wsproto" for hl/2 clients (docs/asgi.md).
    app = HardLightApp(CounterHandler)
    with serving(app, "uvicorn", tmp_path) as server:
        status, _, body = raw_upgrade(server.port, {"Sec-WebSocket-Protocol": "hl/2"})
        assert status == 400
        assert b"Sec-WebSocket-Protocol" in body
        status, headers, _ = raw_upgrade(
            server.port, {"Sec-WebSocket-Protocol": "hl.2", "X-HL-Compress": "1"}
        )
        assert (status, headers["sec-websocket-protocol"], headers["x-hl-compress"]) == (
            101,
            "hl.2",
            "1",
        )
        status, _, body = raw_upgrade(server.port, {"Sec-WebSocket-Protocol": "chat"})
        assert (status, body[:27]) == (400, b"subprotocol must be exactly")


# ------------------------------------------------------------------------- clients


async def _async_counter_flow(client_class: Any, config: ClientConfig) -> list[object]:
    seen: list[object] = []
    async with client_class(Counter, config) as client:
        events = client.subscribe()
        await client.new_counter()
        assert client.state().topic.inner  # the state change arrives before the answer
        await client.increment(5)
        await client.decrement(2)
        assert await client.get() == 3
        assert client.state().counter == 3
        while len(seen) < 3:
            event = await events.get(WAIT)
            assert event is not None, f"events so far: {seen}"
            seen.append(event.decode(CounterEvent))
    return seen


def _threads_counter_flow(config: ClientConfig) -> list[object]:
    seen: list[object] = []
    with hardlight_threads.Client(Counter, config) as client:
        events = client.subscribe()
        client.new_counter()
        assert client.state().topic.inner
        client.increment(5)
        client.decrement(2)
        assert client.get() == 3
        assert client.state().counter == 3
        while len(seen) < 3:
            event = events.get(WAIT)
            assert event is not None, f"events so far: {seen}"
            seen.append(event.decode(CounterEvent))
    return seen


@pytest.mark.parametrize("client", ["asyncio", "anyio", "anyio-trio", "threads"])
@pytest.mark.parametrize("kind", HL2_SERVERS)
def test_calls_state_and_events(kind: str, client: str, tmp_path: Path) -> None:
    app = HardLightApp(CounterHandler)
    changes: list[object] = []
    with serving(app, kind, tmp_path, background=[_greeter(app, changes)]) as server:
        config = _config(server, compression_level=2)
        if client == "asyncio":
            seen = asyncio.run(_async_counter_flow(hardlight_asyncio.Client, config))
        elif client == "threads":
            seen = _threads_counter_flow(config)
        else:
            backend = "trio" if client == "anyio-trio" else "asyncio"
            seen = anyio.run(_async_counter_flow, hardlight_anyio.Client, config, backend=backend)
        # the greeting (emitted by application code on TopicCreated) and both handler events
        assert ServerSentTest() in seen
        assert Incremented(to=5, from_=0) in seen
        assert Decremented(to=3, from_=5) in seen
        _wait_until(lambda: app.connection_count == 0, "the connection to be forgotten")
        _wait_until(
            lambda: [type(c) for c in changes] == [TopicCreated, TopicRemoved],
            f"TopicCreated then TopicRemoved (got {changes})",
        )


@pytest.mark.parametrize("kind", HL2_SERVERS)
def test_256_calls_in_flight(kind: str, tmp_path: Path) -> None:
    app = HardLightApp(ProbeHandler)

    async def flow(config: ClientConfig) -> float:
        async with hardlight_asyncio.Client(Probe, config) as client:
            started = time.monotonic()
            results = await asyncio.gather(*(client.wait(200 + i) for i in range(256)))
            elapsed = time.monotonic() - started
            assert results == [200 + i for i in range(256)]
            assert await client.echo(7) == 7
            return elapsed

    with serving(app, kind, tmp_path) as server:
        elapsed = asyncio.run(flow(_config(server)))
    # one after the other they would take 256 * 0.2 s; concurrently, about 0.5 s
    assert elapsed < 8.0, elapsed


@pytest.mark.parametrize("kind", HL2_SERVERS)
def test_hooks_see_calls_with_their_durations(kind: str, tmp_path: Path) -> None:
    from hardlight_core import CallInfo, ServerHooks

    ended: list[CallInfo] = []
    app = HardLightApp(ProbeHandler)
    app.core.add_hooks(ServerHooks(on_call_end=ended.append))

    async def flow(config: ClientConfig) -> None:
        async with hardlight_asyncio.Client(Probe, config) as client:
            assert await client.wait(30) == 30

    with serving(app, kind, tmp_path) as server:
        asyncio.run(flow(_config(server)))
    (info,) = [i for i in ended if i.method == "wait"]
    assert info.outcome == "ok"
    assert info.duration is not None and info.duration >= 0.02  # the app set the clock


@pytest.mark.parametrize("kind", HL2_SERVERS)
def test_refusals_reach_the_client(kind: str, tmp_path: Path) -> None:
    seen: list[HandshakeInfo] = []

    def authenticate(info: HandshakeInfo) -> str:
        seen.append(info)
        if info.header("x-hl-compress") == "1":
            raise Refuse("level 1 is not welcome here", 403)
        return "guest"

    app = HardLightApp(ProbeHandler, authenticate=authenticate, max_connections=1)

    async def flow(server: AsgiServer) -> None:
        with pytest.raises(ConnectionRefused) as refused:
            await hardlight_asyncio.Client(Probe, _config(server, compression_level=1)).connect()
        assert refused.value.status_code == 403
        # uvicorn's wsproto writes the head and the body separately: the client reads
        # the body to its end, so the reason arrives on every server
        assert refused.value.reason == "level 1 is not welcome here"
        async with hardlight_asyncio.Client(Probe, _config(server)) as first:
            assert await first.echo(1) == 1
            with pytest.raises(ConnectionRefused) as full:
                await hardlight_asyncio.Client(Probe, _config(server)).connect()
            assert full.value.status_code == 503
            assert full.value.reason == "server is at its connection limit"
            assert await first.echo(2) == 2

    with serving(app, kind, tmp_path) as server:
        asyncio.run(flow(server))
        # the refused ones never held a session
        _wait_until(lambda: app.connection_count == 0, "the connections to be forgotten")
    assert seen and seen[0].path == "/"
    assert seen[0].compression_level == 1


@pytest.mark.parametrize("kind", HL2_SERVERS)
def test_handler_failures_are_contained(kind: str, tmp_path: Path) -> None:
    app = HardLightApp(ProbeHandler)

    async def flow(server: AsgiServer) -> None:
        async with (
            hardlight_asyncio.Client(Probe, _config(server)) as client,
            hardlight_asyncio.Client(Probe, _config(server)) as bystander,
        ):
            with pytest.raises(HandlerPanicked):
                await client.boom()
            with pytest.raises(ServerEncodeError):
                await client.bad_return()
            assert await client.echo(5) == 5  # the connection goes on
            # SystemExit from a handler closes only that connection (1011)
            with pytest.raises(ClientNotConnected):
                await client.exit(timeout=WAIT)
            assert await bystander.echo(6) == 6
        async with hardlight_asyncio.Client(Probe, _config(server)) as again:
            assert await again.echo(8) == 8

    with serving(app, kind, tmp_path) as server:
        asyncio.run(flow(server))
        _wait_until(lambda: app.connection_count == 0, "the connections to be forgotten")


@pytest.mark.parametrize("kind", HL2_SERVERS)
def test_graceful_shutdown(kind: str, tmp_path: Path) -> None:
    app = HardLightApp(ProbeHandler)
    with serving(app, kind, tmp_path) as server:
        client = hardlight_threads.Client(Probe, _config(server))
        client.connect()
        results: list[object] = []

        def slow() -> None:
            try:
                results.append(client.wait(600, timeout=WAIT))
            except Exception as exc:
                results.append(exc)

        caller = threading.Thread(target=slow)
        caller.start()
        _wait_until(lambda: app.core.running_calls == 1, "the call to start")
        started = time.monotonic()
        server.call(app.shutdown, 5.0)
        took = time.monotonic() - started
        caller.join(WAIT)
        assert results == [600]  # the running call finished and was answered
        assert took < 4.0, took  # no waiting for the whole grace
        _wait_until(lambda: not client.connected, "the client to see the close")
        assert app.connection_count == 0
        assert app.stopped
        with pytest.raises(ConnectionRefused) as refused:
            hardlight_threads.Client(Probe, _config(server)).connect()
        assert refused.value.status_code == 503
        client.disconnect()


# ------------------------------------------------------------------------- raw messages


@pytest.mark.parametrize("kind", HL2_SERVERS)
def test_text_ignored_and_oversized_message_closes_1009(kind: str, tmp_path: Path) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    spec = ServiceSpec.of(Probe)
    app = HardLightApp(ProbeHandler)
    with serving(app, kind, tmp_path) as server:
        url = f"wss://127.0.0.1:{server.port}/"
        with connect(
            url,
            subprotocols=["hl.2"],  # type: ignore[list-item]
            ssl=insecure_context(),
            additional_headers={"X-HL-Compress": "0"},
            open_timeout=WAIT,
            compression=None,
        ) as ws:
            ws.send("text is ignored")
            ws.send(b"not deflate at all")  # undecodable: ignored, as the reference does
            ws.send(pack(RPCRequest(id=4, internal=spec.encode_call("echo", 41)), 0))
            answer = unpack_server_message(ws.recv(timeout=WAIT))  # type: ignore[arg-type]
            assert isinstance(answer, RPCResponse) and answer.id == 4
            assert isinstance(answer.output, Ok)
            assert spec.decode_return("echo", answer.output.value) == 41
            (session,) = app.core.sessions
            assert session.adapter.text_messages == 1
            ws.send(b"\0" * (1024 * 1024 + 1))  # over Limits.max_message_size
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=WAIT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        _wait_until(lambda: app.connection_count == 0, "the connection to be forgotten")
