"""Nothing a handler does reaches the transport, on every server adapter (anyio on both
backends): each case answers the call, logs it, and the connection and the others go on.
Also the transport rules every adapter must apply the same: slow upgrades time out,
ping floods stay bounded, duplicate in-flight ids are dropped, connections are counted
and a stop with a call in flight is clean."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import msgspec
import pytest
from hl_harness import SERVER_RUNTIMES, RunningServer, pinned_config, run_bounded, running

from hardlight_asyncio import Client
from hardlight_core import HandlerPanicked, Limits, ServerEncodeError, i64, u32
from hardlight_core._connection import ClientConnection
from hardlight_core._envelope import RPCRequest, pack, unpack_server_message
from hardlight_core._service import Handler, Service, ServiceSpec
from hardlight_support import ClientConfig, ServerConfig

WAIT = 10.0
F = TypeVar("F", bound=Callable[..., Any])
seen_in_context: contextvars.ContextVar[int] = contextvars.ContextVar("seen", default=0)


class KvState(msgspec.Struct):
    count: u32 = 0
    name: str = ""


class Kv(Service):
    State = KvState

    async def set_count(self, n: i64) -> None: ...
    async def set_both(self, n: i64, name: str) -> None: ...
    async def bad_return(self) -> u32: ...
    async def mismatched(self, x: u32) -> u32: ...
    async def decorated_raises(self) -> u32: ...
    async def wrapped(self, x: u32) -> u32: ...
    async def not_a_coroutine(self) -> u32: ...
    async def context(self, x: u32) -> u32: ...
    async def slow(self, ms: u32) -> u32: ...
    async def get(self) -> u32: ...


def raising_decorator(function: F) -> F:
    """A sync decorator whose wrapper raises before the handler is even made."""

    @functools.wraps(function)
    def wrapper(*args: Any) -> Any:
        raise LookupError("the decorator refused")

    return wrapper  # type: ignore[return-value]


def passthrough(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A sync wrapper around an awaiting handler (the bytecode scan called it inline)."""

    @functools.wraps(function)
    def wrapper(*args: Any) -> Awaitable[Any]:
        return function(*args)

    return wrapper


class KvHandler(Kv, Handler, checked=False):  # broken on purpose: skip the definition check
    state: KvState

    async def set_count(self, n: i64) -> None:
        self.state.count = n  # type: ignore[assignment]  # -1 does not archive as a u32

    async def set_both(self, n: i64, name: str) -> None:
        self.state.name = name
        self.state.count = n  # type: ignore[assignment]

    async def bad_return(self) -> u32:
        return -5  # type: ignore[return-value]

    @raising_decorator
    async def decorated_raises(self) -> u32:
        return 1

    @passthrough  # type: ignore[arg-type]
    async def wrapped(self, x: u32) -> u32:
        await anyio.sleep(0.01)
        return x + 1

    async def context(self, x: u32) -> u32:
        before = seen_in_context.get()
        seen_in_context.set(x)
        await anyio.sleep(0.05)
        assert seen_in_context.get() == x  # no other call changed it
        return before

    async def slow(self, ms: u32) -> u32:
        await anyio.sleep(ms / 1000)
        return ms

    async def get(self) -> u32:
        return self.state.count


async def _mismatched(self: KvHandler) -> u32:
    return 1


def _not_a_coroutine(self: KvHandler) -> u32:
    return 3


# Handler classes are checked when they are defined (a mismatched signature or a plain def
# is refused then); methods replaced afterwards, as dynamic code may, reach the server
# unchecked, and the core must still contain them at call time.
KvHandler.mismatched = _mismatched  # type: ignore[method-assign,assignment]
KvHandler.not_a_coroutine = _not_a_coroutine  # type: ignore[method-assign,assignment]


@pytest.fixture(params=SERVER_RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def kv_server(runtime: str) -> Iterator[RunningServer]:
    limits = Limits(handshake_timeout=1.0, max_outgoing_bytes=64 * 1024)
    with running(runtime, ServerConfig.self_signed("localhost:0", limits=limits), KvHandler) as srv:
        yield srv


def _config(server: RunningServer) -> ClientConfig:
    return pinned_config(server, WAIT)  # type: ignore[no-any-return]


def _run(coro: Awaitable[Any]) -> Any:
    return run_bounded(coro, WAIT * 3)


def _eventually(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


# -- containment ---------------------------------------------------------------------------


def test_state_that_does_not_archive_is_rolled_back_and_answers_panicked(
    kv_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        async with Client(Kv, _config(kv_server)) as a, Client(Kv, _config(kv_server)) as b:
            await a.set_count(5)
            assert a.state().count == 5
            with caplog.at_level(logging.ERROR, "hardlight"):
                with pytest.raises(HandlerPanicked):
                    await a.set_count(-1)
                with pytest.raises(HandlerPanicked):
                    await a.set_both(-1, "half")  # neither field's change is sent
            assert await a.get() == 5  # rolled back to what the client last got
            assert a.state().count == 5 and a.state().name == ""
            await a.set_count(7)
            assert (await a.get(), a.state().count) == (7, 7)
            assert await b.get() == 0  # the other connection never noticed
        assert any("set_count" in r.getMessage() for r in caplog.records)

    _run(go())


def test_every_handler_failure_is_an_answer_and_the_connection_goes_on(
    kv_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        async with Client(Kv, _config(kv_server)) as client:
            with caplog.at_level(logging.ERROR, "hardlight"):
                with pytest.raises(ServerEncodeError):
                    await client.bad_return()
                for method in ("mismatched", "decorated_raises", "not_a_coroutine"):
                    args = (1,) if method == "mismatched" else ()
                    with pytest.raises(HandlerPanicked):
                        await client.call(method, *args)
            assert await client.wrapped(41) == 42  # a correct wrapped handler is fine
            assert await client.get() == 0
        logged = " ".join(r.getMessage() for r in caplog.records)
        for method in ("bad_return", "mismatched", "decorated_raises", "not_a_coroutine"):
            assert method in logged, f"{method} failure not logged: {logged}"

    _run(go())


def test_each_call_runs_in_its_own_context(kv_server: RunningServer) -> None:
    async def go() -> None:
        async with Client(Kv, _config(kv_server)) as client:
            firsts = await asyncio.gather(*(client.context(x) for x in range(1, 21)))
            assert firsts == [0] * 20  # nothing leaked in from another call
            assert await client.context(99) == 0

    _run(go())


# -- transport rules ------------------------------------------------------------------------


def _tls_socket(server: RunningServer, rcvbuf: int | None = None) -> ssl.SSLSocket:
    assert server.config.tls is not None
    context = ssl.create_default_context(cadata=server.config.tls.cert_pem.decode())
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # a small window: a peer that does not read shows at once
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(WAIT)
    raw.connect(("127.0.0.1", server.port))
    return context.wrap_socket(raw, server_hostname="localhost")


def _masked(opcode: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + body


def _upgrade(sock: ssl.SSLSocket) -> bytes:
    sock.sendall(ClientConnection("localhost").data_to_send())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return rest


def _read_frames(sock: ssl.SSLSocket, data: bytes, seconds: float) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        while len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F) and (data[1] & 0x7F) < 126:
            n = data[1] & 0x7F
            frames.append((data[0] & 0x0F, data[2 : 2 + n]))
            data = data[2 + n :]
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return frames


def test_an_upgrade_trickled_byte_by_byte_times_out(kv_server: RunningServer) -> None:
    sock = _tls_socket(kv_server)
    request = ClientConnection("localhost").data_to_send()
    start = time.monotonic()
    closed = False
    sock.settimeout(0.1)
    for byte in request:  # one byte every 100 ms: the 1 s handshake timeout must win
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1024) == b"":
                closed = True
                break
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except OSError:
            closed = True
            break
        assert time.monotonic() - start < WAIT
    sock.close()
    assert closed, "the server kept a trickling upgrade open past its handshake timeout"
    assert time.monotonic() - start < 5.0


def test_a_ping_flood_on_a_connection_that_does_not_read_stays_bounded(
    kv_server: RunningServer,
) -> None:
    """100,000 pings, no pong read: the server queues one pong (the latest), not one per
    ping, so the 64 KiB outgoing bound is never reached and the connection still works."""
    sock = _tls_socket(kv_server, rcvbuf=4096)
    rest = _upgrade(sock)
    burst = _masked(0x9, b"p") * 1000
    for _ in range(100):
        sock.sendall(burst)
    sizes = [s.connection.outgoing_size for s in list(kv_server.server.core.sessions)]
    assert all(size <= 64 * 1024 for size in sizes), sizes
    request = pack(RPCRequest(9, ServiceSpec.of(Kv).encode_call("get")), 0)
    sock.sendall(bytes([0x82, 0x80 | len(request)]) + b"\0\0\0\0" + request)
    frames = _read_frames(sock, rest, 3.0)
    opcodes = {op for op, _ in frames}
    assert 0x8 not in opcodes, [p for op, p in frames if op == 0x8]  # not closed (1008)
    answers = [unpack_server_message(p) for op, p in frames if op == 2]
    assert [a.id for a in answers if hasattr(a, "output")] == [9]
    pongs = [p for op, p in frames if op == 0xA]
    assert 1 <= len(pongs) < 100_000
    sock.close()
    _eventually(lambda: kv_server.connection_count == 0, "the flooding connection stayed")


@pytest.mark.parametrize("method", ["get", "slow"])
def test_twenty_copies_of_one_in_flight_id_get_one_answer(
    kv_server: RunningServer, method: str
) -> None:
    """As the reference: 20 copies of id 5 in one write run the handler once, whether it
    awaits (``slow``) or answers at once (``get``)."""
    sock = _tls_socket(kv_server)
    rest = _upgrade(sock)
    internal = ServiceSpec.of(Kv).encode_call(method, *((50,) if method == "slow" else ()))
    request = pack(RPCRequest(5, internal), 0)
    frame = bytes([0x82, 0x80 | len(request)]) + b"\0\0\0\0" + request
    sock.sendall(frame * 20)
    frames = _read_frames(sock, rest, 1.5)
    answers = [unpack_server_message(p) for op, p in frames if op == 2]
    assert [a.id for a in answers if hasattr(a, "output")] == [5]
    sock.close()


def test_connections_are_counted_until_they_are_gone(kv_server: RunningServer) -> None:
    async def go() -> None:
        async with Client(Kv, _config(kv_server)) as a, Client(Kv, _config(kv_server)) as b:
            await a.get()
            await b.get()
            assert kv_server.connection_count == 2

    _run(go())
    _eventually(lambda: kv_server.connection_count == 0, "a connection stayed counted")


def test_stop_with_a_call_in_flight_is_clean(
    runtime: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = RunningServer(runtime, ServerConfig.self_signed("localhost:0"), KvHandler)

    async def go() -> None:
        client = Client(Kv, _config(server))
        await client.connect()
        pending = asyncio.ensure_future(client.slow(5000))
        await asyncio.sleep(0.2)
        with caplog.at_level(logging.DEBUG):
            await asyncio.to_thread(server.stop, 0.2)  # the call outlives the grace
        with pytest.raises(Exception) as info:
            await pending
        assert "HandlerPanicked" not in type(info.value).__name__
        await client.disconnect()

    _run(go())
    problems = [
        r for r in caplog.records if r.levelno >= logging.ERROR or "reuse" in r.getMessage()
    ]
    assert not problems, [r.getMessage() for r in problems]


def test_struct_of_frames_helper_is_consistent() -> None:
    # the raw helpers above must build what the core's reader accepts
    from hardlight_core._framing import FrameReader

    reader = FrameReader(expect_masked=True, max_message_size=1024)
    (frame,) = reader.feed(_masked(0x9, b"abc"))
    assert frame.payload == b"abc"
    assert struct.calcsize(">H") == 2


def test_sockets_over_the_pending_handshake_bound_are_closed_at_once(runtime: str) -> None:
    limits = Limits(handshake_timeout=30.0, max_pending_handshakes=2)
    config = ServerConfig.self_signed("localhost:0", limits=limits)
    server = RunningServer(runtime, config, KvHandler)
    idle: list[socket.socket] = []
    try:
        for _ in range(2):  # TLS, then never an upgrade: they hold the two places
            idle.append(_tls_socket(server))
        _eventually(lambda: server.connection_count == 2, "the idle sockets were not taken")
        started = time.monotonic()
        closed = False
        try:
            extra = _tls_socket(server)
            extra.settimeout(5.0)
            closed = extra.recv(1) == b""
            extra.close()
        except TimeoutError:
            closed = False  # still open after 5 s: kept
        except (OSError, ssl.SSLError):
            closed = True  # closed before or during TLS
        assert closed, "a socket over the bound was kept"
        assert time.monotonic() - started < 5.0  # not the 30 s handshake timeout
        for sock in idle:
            sock.close()
        _eventually(lambda: server.connection_count == 0, "the idle sockets stayed counted")

        async def call() -> u32:
            async with Client(Kv, _config(server)) as client:
                return await client.get()  # type: ignore[no-any-return]

        assert _run(call()) == 0  # room again
    finally:
        for sock in idle:
            sock.close()
        server.stop(1.0)
