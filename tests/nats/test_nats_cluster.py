"""Events across three server processes on NATS (marked ``nats``).

``.ci/run`` installs Debian's nats-server, starts it and sets NATS_URL. Outside CI the
tests start a private nats-server when the binary is installed, and skip (saying so)
when it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardlight_apps import chat
from hardlight_asyncio import BusUnavailable, Client, NatsBus, Server
from hardlight_core import Topic
from hardlight_support import ClientConfig, ClientTLS, ServerConfig

pytestmark = pytest.mark.nats
WAIT = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_nats(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nats-server did not start")


def _have_nats() -> bool:
    return bool(shutil.which("nats-server") or os.path.exists("/usr/sbin/nats-server"))


def _require_nats() -> None:
    if not _have_nats():
        if os.environ.get("CI"):
            pytest.fail("CI must install nats-server (.ci/run does: apt-get install nats-server)")
        pytest.skip("nats-server is not installed (apt-get install nats-server); CI installs it")


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    if os.environ.get("NATS_URL"):
        yield os.environ["NATS_URL"]
        return
    _require_nats()
    port = _free_port()
    proc = _start_nats(port)
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


class Node:
    """A ``serve --app chat --bus URL`` process."""

    def __init__(self, url: str, tmp: Path, name: str, adapter: str = "asyncio") -> None:
        self.cert = tmp / f"{name}.pem"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hardlight_conformance",
                "serve",
                "--app",
                "chat",
                "--port",
                "0",
                "--self-signed",
                "--write-cert",
                str(self.cert),
                "--bus",
                url,
                "--adapter",
                adapter,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), line
        self.port = int(line.rsplit(":", 1)[1])

    def client(self) -> Client:
        tls = ClientTLS(ca_file=str(self.cert))
        return Client(chat.Chat, ClientConfig(f"localhost:{self.port}", tls=tls))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _said(client: Client, text: str, timeout: float) -> int:
    """How many Said(text) events arrive within ``timeout``."""
    seen = 0

    async def count() -> None:
        nonlocal seen
        async for event in client.subscribe():
            value = event.decode(chat.ChatEvent)
            if isinstance(value, chat.Said) and value.message.text == text:
                seen += 1

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(count(), timeout)
    return seen


def test_events_reach_every_node_exactly_once(nats_url: str, tmp_path: Path) -> None:
    # one server process per adapter: the bus works with all three
    nodes = [
        Node(nats_url, tmp_path, f"n{i}", adapter)
        for i, adapter in enumerate(("asyncio", "anyio", "threads"))
    ]
    try:

        async def go() -> None:
            clients = [n.client() for n in nodes]
            for i, c in enumerate(clients):
                await c.connect()
                await c.join("cluster", f"user{i}")
            await asyncio.sleep(0.3)  # subscriptions propagate to NATS
            await clients[0].send_message("hello all")
            counts = await asyncio.gather(*(_said(c, "hello all", 1.0) for c in clients))
            assert counts == [1, 1, 1]  # every node, exactly once per emit

            await clients[2].leave()  # unsubscribe on node 3
            await asyncio.sleep(0.3)
            await clients[1].send_message("after leave")
            counts = await asyncio.gather(*(_said(c, "after leave", 1.0) for c in clients))
            assert counts == [1, 1, 0]

            await clients[2].disconnect()
            nodes[2].stop()  # a node drops out
            await clients[0].send_message("two left")
            counts = await asyncio.gather(*(_said(c, "two left", 1.0) for c in clients[:2]))
            assert counts == [1, 1]
            for c in clients[:2]:
                await c.disconnect()

        asyncio.run(asyncio.wait_for(go(), 60))
    finally:
        for n in nodes:
            n.stop()


def test_unreachable_nats_at_start_is_a_clear_error() -> None:
    async def go() -> None:
        server = Server(
            ServerConfig.self_signed("localhost:0"),
            chat.ChatHandler,
            bus=NatsBus(f"nats://127.0.0.1:{_free_port()}", connect_timeout=0.5),
        )
        with pytest.raises(BusUnavailable, match="cannot reach NATS"):
            await server.start()

    asyncio.run(asyncio.wait_for(go(), 30))


def test_outage_keeps_local_delivery_and_recovers(tmp_path: Path) -> None:
    _require_nats()
    port = _free_port()
    url = f"nats://127.0.0.1:{port}"
    broker = _start_nats(port)
    try:

        async def go() -> None:
            config_a = ServerConfig.self_signed("localhost:0")
            config_b = ServerConfig.self_signed("localhost:0")
            a = Server(config_a, chat.ChatHandler, bus=NatsBus(url, reconnect_wait=0.2))
            b = Server(config_b, chat.ChatHandler, bus=NatsBus(url, reconnect_wait=0.2))
            await a.start()
            await b.start()
            assert config_a.fingerprint and config_b.fingerprint
            alice = Client(
                chat.Chat, ClientConfig.pinned(f"localhost:{a.port}", config_a.fingerprint)
            )
            bob = Client(
                chat.Chat, ClientConfig.pinned(f"localhost:{b.port}", config_b.fingerprint)
            )
            await alice.connect()
            await bob.connect()
            await alice.join("r", "alice")
            await bob.join("r", "bob")
            await asyncio.sleep(0.3)
            nonlocal broker
            broker.terminate()
            broker.wait(10)
            await alice.send_message("during outage")
            assert await _said(alice, "during outage", 1.0) == 1  # local delivery goes on
            broker = _start_nats(port)
            deadline = time.monotonic() + WAIT
            got = 0
            while not got and time.monotonic() < deadline:
                await alice.send_message("after recovery")
                got = await _said(bob, "after recovery", 0.5)
            assert got >= 1
            assert Topic.from_str("chat-r") in a.core.switch.topics
            for c in (alice, bob):
                await c.disconnect()
            await a.stop(grace=0.5)
            await b.stop(grace=0.5)

        asyncio.run(asyncio.wait_for(go(), 60))
    finally:
        broker.terminate()
        broker.wait(10)
