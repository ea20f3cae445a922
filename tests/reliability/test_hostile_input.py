"""Hostile input against a running server: it answers or closes with the right code, never
hangs, never crashes, never hurts another connection, and never grows without bound."""

from __future__ import annotations

import asyncio
import os
import resource
import zlib
from typing import Any

import pytest
from hl_reliability import TIMEOUT, RawClient, ServerThread, close_code

from hardlight_apps.counter import Counter
from hardlight_core import RpcHandlerError, ServerDecodeError
from hardlight_core._client_driver import _Pending
from hardlight_core._envelope import RPCRequest, encode_client_message, unpack_server_message
from hardlight_core._service import ServiceSpec

SPEC = ServiceSpec.of(Counter)


def _call_frame(call_id: int, internal: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    archive = encode_client_message(RPCRequest(call_id, internal))
    return compressor.compress(archive) + compressor.flush()


def _probe(server: ServerThread) -> int:
    """A well-behaved client's call on its own connection still works."""
    from hardlight_asyncio import Client

    async def go() -> int:
        async with Client(Counter, server.client_config()) as client:
            await client.increment(2)
            value: int = await client.get()
            return value

    return int(asyncio.run(asyncio.wait_for(go(), TIMEOUT)))


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_deflate_bomb_is_refused_with_1009_and_memory_stays_bounded(server: ServerThread) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\0" * (200 * 1024 * 1024)) + compressor.flush()
    assert len(bomb) < 1024 * 1024  # fits the message limit; inflates to 200 MiB
    before = _rss_kib()
    raw = RawClient(server)
    raw.send_frame(bomb)
    frames = raw.read_frames()
    raw.close()
    assert close_code(frames) == 1009
    # the server inflated at most max_inflated_size (16 MiB) before refusing
    assert _rss_kib() - before < 64 * 1024
    assert _probe(server) == 2


def test_absurd_frame_length_closes_at_once(server: ServerThread) -> None:
    raw = RawClient(server)
    raw.send_frame(b"", length=2**62)
    frames = raw.read_frames()
    raw.close()
    assert close_code(frames) == 1009
    assert _probe(server) == 2


@pytest.mark.parametrize(
    ("kind", "code"),
    [("unmasked", 1002), ("rsv", 1002), ("opcode3", 1002), ("bad_utf8_text", 1007)],
)
def test_websocket_violations_close_with_the_rfc_code(
    server: ServerThread, kind: str, code: int
) -> None:
    raw = RawClient(server)
    if kind == "unmasked":
        raw.send_frame(b"abc", masked=False)
    elif kind == "rsv":
        raw.send_frame(b"abc", rsv=4)
    elif kind == "opcode3":
        raw.send_frame(b"abc", opcode=3)
    else:
        raw.send_frame(b"\xff\xfe", opcode=1)
    frames = raw.read_frames()
    raw.close()
    assert close_code(frames) == code  # never left silent, as the reference leaves it


def test_garbage_messages_are_ignored_and_the_connection_keeps_serving(
    server: ServerThread,
) -> None:
    raw = RawClient(server)
    rng = __import__("random").Random(7)
    for _ in range(200):
        raw.send_frame(bytes(rng.randrange(256) for _ in range(rng.randrange(64))))
    raw.send_frame(b"text is ignored", opcode=1)
    raw.send_frame(_call_frame(9, SPEC.encode_call("get")))
    # the answer to call 9 arrives: read frames until a binary one decodes as a response
    got: list[Any] = []
    raw_frames: list[tuple[int, bytes]] = []
    while not got:
        chunk = raw.sock.recv(65536)
        assert chunk, "server closed instead of answering"
        raw.buffer += chunk
        while len(raw.buffer) >= 2 and len(raw.buffer) >= 2 + (raw.buffer[1] & 0x7F):
            n = raw.buffer[1] & 0x7F
            raw_frames.append((raw.buffer[0] & 0x0F, raw.buffer[2 : 2 + n]))
            raw.buffer = raw.buffer[2 + n :]
        got = [unpack_server_message(p) for op, p in raw_frames if op == 2]
    raw.close()
    assert got[0].id == 9
    assert _probe(server) == 2


@pytest.mark.parametrize(
    "internal",
    [b"", b"\x09\0\0\0\0\0\0\0", b"\x01\0\0", b"\xff" * 8],
    ids=["empty", "unknown_tag", "truncated", "garbage"],
)
def test_undecodable_calls_get_server_decode_error(server: ServerThread, internal: bytes) -> None:
    from hardlight_asyncio import Client

    async def go() -> Any:
        async with Client(Counter, server.client_config()) as client:
            driver = client._driver
            core = driver.core
            assert core is not None
            # send raw call bytes through the real client machine, awaited like get()
            call_id = core.connection.start_call(internal)
            future = asyncio.get_running_loop().create_future()
            driver._pending[call_id] = _Pending(future, "get", None, None)
            core._methods[call_id] = "get"
            client._flush()
            return await asyncio.wait_for(future, TIMEOUT)

    with pytest.raises(ServerDecodeError):
        asyncio.run(go())
    assert RpcHandlerError.ServerDecodeError.value == 5


def test_a_flooding_connection_does_not_starve_another(server: ServerThread) -> None:
    from hardlight_asyncio import Client

    flood = RawClient(server)
    frame = _call_frame(0, SPEC.encode_call("increment", 1))

    async def well_behaved() -> int:
        async with Client(Counter, server.client_config()) as client:
            await client.new_counter()
            for _ in range(100):
                await client.increment(1)
            value: int = await client.get()
            return value

    import threading

    done = threading.Event()

    def flooder() -> None:
        try:
            while not done.is_set():
                flood.send_frame(frame)  # the same id again and again: duplicates ignored
        except OSError:
            pass

    thread = threading.Thread(target=flooder, daemon=True)
    thread.start()
    try:
        assert asyncio.run(asyncio.wait_for(well_behaved(), TIMEOUT * 3)) == 100
    finally:
        done.set()
        thread.join(TIMEOUT)
        flood.close()


def test_hundreds_of_abrupt_disconnects_leave_nothing_behind(server: ServerThread) -> None:
    from hardlight_asyncio import Client

    async def churn() -> None:
        for i in range(200):
            client = Client(Counter, server.client_config())
            await client.connect()
            await client.new_counter()
            if i % 2:
                client._protocol.transport.abort()  # type: ignore[union-attr]
            else:
                await client.disconnect()

    asyncio.run(asyncio.wait_for(churn(), TIMEOUT * 6))

    async def settled() -> tuple[int, int]:
        for _ in range(500):
            if not server.server.core.sessions and not server.server.core.switch.topics:
                break
            await asyncio.sleep(0.01)
        return len(server.server.core.sessions), len(server.server.core.switch.topics)

    assert server.run(settled()) == (0, 0)
    assert _probe(server) == 2


def test_a_reader_that_never_reads_is_closed_not_buffered_forever() -> None:
    from hardlight_core._limits import Limits

    server = ServerThread(Limits(max_outgoing_bytes=64 * 1024))
    try:
        raw = RawClient(server, rcvbuf=4096)
        raw.send_frame(_call_frame(0, SPEC.encode_call("new_counter")))
        raw.sock.settimeout(2)
        from hardlight_apps.counter import CounterEvent, Incremented

        async def flood_events() -> int:
            core = server.server.core
            topics = list(core.switch.topics)
            for _ in range(200):
                if topics:
                    break
                await asyncio.sleep(0.01)
                topics = list(core.switch.topics)
            emitter = server.server.event_emitter(CounterEvent)
            sent = 0
            for i in range(300_000):
                sent += await emitter.emit(topics[0], Incremented(to=i, from_=i))
                if i % 100 == 0:
                    await asyncio.sleep(0)
                    if not core.switch.topics:
                        break
            return sent

        server.run(flood_events(), timeout=TIMEOUT * 3)

        async def closed() -> bool:
            for _ in range(500):
                if not server.server.core.sessions:
                    return True
                await asyncio.sleep(0.01)
            return False

        assert server.run(closed())  # closed (1008), its memory released
        raw.close()
    finally:
        server.stop()
