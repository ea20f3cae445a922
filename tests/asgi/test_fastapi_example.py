"""examples/fastapi_app.py: started as a user would, then its page, its JSON route, its static
files and HardLight (chat) on the one port it prints; and Starlette routes beside HardLight."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from asgi_harness import insecure_context, raw_upgrade, serving

import hardlight_asyncio
from hardlight_apps.chat import Chat, ChatEvent, Joined, Said
from hardlight_apps.counter import Counter, CounterHandler
from hardlight_asgi import HardLightApp
from hardlight_support import ClientConfig

ROOT = Path(__file__).resolve().parents[2]
WAIT = 10.0


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, context=insecure_context(), timeout=WAIT) as response:
        return response.status, response.headers.get("content-type", ""), response.read()


class _Lines:
    """A subprocess's stdout lines, read by a thread so every wait is bounded."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                self.queue.put(line.rstrip("\n"))
            self.queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def rest(self, timeout: float = 10.0) -> list[str]:
        """Every line up to the end of the output (bounded)."""
        while True:
            try:
                line = self.queue.get(timeout=timeout)
            except queue.Empty:
                return self.seen
            if line is None:
                return self.seen
            self.seen.append(line)

    def next(self, timeout: float = 30.0) -> str:
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout}s; so far {self.seen}") from None
        if line is None:
            raise AssertionError(f"the example exited; it said {self.seen}")
        self.seen.append(line)
        return line


async def _chat(address: str, fingerprint: str) -> list[object]:
    config = ClientConfig.pinned(address, fingerprint)
    async with (
        hardlight_asyncio.Client(Chat, config) as alice,
        hardlight_asyncio.Client(Chat, config) as bob,
    ):
        events = bob.subscribe()
        assert await bob.join("lobby", "bob") == 0
        assert await alice.join("lobby", "alice") == 0
        assert await alice.send_message("hello from alice") == 1
        assert alice.state().sent == 1
        seen: list[object] = []
        while not any(isinstance(e, Said) for e in seen):
            event = await events.get(WAIT)
            assert event is not None, seen
            seen.append(event.decode(ChatEvent))
        history = await bob.history(10)
        assert [(m.from_, m.text) for m in history] == [("alice", "hello from alice")]
        return seen


def test_fastapi_example_serves_page_json_and_hardlight() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "fastapi_app.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = _Lines(proc)
    try:
        first = lines.next()
        assert first.startswith("serving on https://localhost:"), first
        port = int(first.rstrip("/").rsplit(":", 1)[1])
        fingerprint = lines.next().removeprefix("fingerprint ")
        base = f"https://127.0.0.1:{port}"

        status, kind, body = _get(f"{base}/")
        assert (status, kind.split(";")[0]) == (200, "text/html")
        assert b"HardLight on FastAPI" in body and b"/examples/browser/index.html" in body
        status, kind, body = _get(f"{base}/examples/browser/chat.js")
        assert status == 200 and b"Client.connect" in body
        status, _, _ = _get(f"{base}/clients/js/src/index.js")
        assert status == 200
        status, kind, body = _get(f"{base}/api/rooms")
        assert (status, kind, json.loads(body)) == (
            200,
            "application/json",
            {"rooms": {}, "connections": 0},
        )

        seen = asyncio.run(_chat(f"127.0.0.1:{port}", fingerprint))
        assert Joined(user="bob") in seen and Joined(user="alice") in seen
        assert json.loads(_get(f"{base}/api/rooms")[2]) == {
            "rooms": {"lobby": 1},
            "connections": 0,
        }
        # a browser's upgrade (hl.2) to the same port
        status, headers, _ = raw_upgrade(port, {"Sec-WebSocket-Protocol": "hl.2"})
        assert (status, headers["sec-websocket-protocol"]) == (101, "hl.2")
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn's graceful stop, then the lifespan's
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    rest = lines.rest()
    assert proc.returncode == 0, rest
    assert rest and rest[-1] == "stopped", rest


@pytest.mark.parametrize("kind", ["uvicorn-wsproto", "hypercorn-trio"])
def test_starlette_routes_beside_hardlight(kind: str, tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Mount, Route, WebSocketRoute

    hardlight = HardLightApp(CounterHandler)

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def count(request: Any) -> JSONResponse:
        return JSONResponse({"connections": hardlight.connection_count})

    app = Starlette(
        routes=[
            Route("/", hello),
            Route("/count", count),
            WebSocketRoute("/", hardlight),
            Mount("/hl", app=hardlight),  # mounted: a browser could use wss://host/hl/
        ],
        lifespan=hardlight.lifespan,
    )

    async def flow(address: str, fingerprint: str, port: int) -> None:
        async with hardlight_asyncio.Client(
            Counter, ClientConfig.pinned(address, fingerprint)
        ) as client:
            await client.new_counter()
            await client.increment(4)
            assert await client.get() == 4
            counted = await asyncio.to_thread(_get, f"https://127.0.0.1:{port}/count")
            assert json.loads(counted[2]) == {"connections": 1}

    with serving(app, kind, tmp_path) as server:
        assert _get(f"https://127.0.0.1:{server.port}/")[2] == b"hello"
        asyncio.run(flow(server.address, server.fingerprint, server.port))
        status, headers, _ = raw_upgrade(
            server.port, {"Sec-WebSocket-Protocol": "hl.2"}, path="/hl/"
        )
        assert (status, headers["sec-websocket-protocol"]) == (101, "hl.2")
        # a path nobody serves: Starlette refuses the upgrade itself
        status, _, _ = raw_upgrade(server.port, {"Sec-WebSocket-Protocol": "hl/2"}, path="/x")
        assert status == 403
    assert hardlight.stopped  # the lifespan's end ran HardLight's graceful shutdown
