"""``check --app chat`` tells the reference's documented lost own event from a real failure.

The reference may lose the event a handler emits right after subscribing its own connection
(data/traffic/README.md, fact 14): in the chat app, a client's own ``Joined``. ``check`` reports
that as a named DIVERGENCE and passes; any other missing event is a FAIL whose message says what
it waited for. The servers here are our asyncio server with chat handlers that reproduce the
reference's loss, or drop another event; they bind 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hardlight_apps.chat import ChatHandler, Joined, Left
from hardlight_conformance._serve_cli import handler_for
from hardlight_core import Topic
from hardlight_support import ServerConfig, ServerTLS

SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) divergences?)?$")
CHECK_TIMEOUT = 90  # seconds for a whole ``check`` subprocess


class _Server:
    """Our asyncio server with one chat handler class, on its own loop in a thread."""

    def __init__(self, handler: type[Any], tmp: Path) -> None:
        import hardlight_asyncio

        tls = ServerTLS.self_signed("localhost", "127.0.0.1")
        self.cert = tmp / "cert.pem"
        self.cert.write_bytes(tls.cert_pem)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Any = hardlight_asyncio.Server(
            ServerConfig(host="127.0.0.1", port=0, tls=tls), handler
        )
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        host, self.port = self.server.address[:2]
        assert host == "127.0.0.1"

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def _chat(name: str, **methods: Any) -> type[Any]:
    """Our served chat handler (fresh shared history) with some methods replaced."""
    return type(name, (handler_for("chat"),), methods)


async def _join_emit_then_subscribe(self: Any, room: str, user: str) -> int:
    # the reference's lost case, made certain: the Joined goes out before this connection is
    # subscribed, so everyone already in the room gets it and the joining connection does not
    topic = Topic.from_str("chat-" + room)
    self.state.user = user
    self.state.room = topic
    self.emit(topic, Joined(user=user))
    self.subscribe(topic)
    return len(self.rooms.history.get(topic, ()))


async def _join_bob_loses_own(self: Any, room: str, user: str) -> int:
    # only the second client (bob) loses his own Joined, as in the failing reference runs
    if user == "bob":
        return await _join_emit_then_subscribe(self, room, user)
    return await ChatHandler.join(self, room, user)


async def _join_without_event(self: Any, room: str, user: str) -> int:
    # nobody hears about the join: alice must FAIL on bob's Joined (not a divergence)
    topic = Topic.from_str("chat-" + room)
    self.subscribe(topic)
    self.state.user = user
    self.state.room = topic
    return len(self.rooms.history.get(topic, ()))


async def _leave_without_event(self: Any) -> None:
    self.unsubscribe(self.state.room)
    self.state.room = Topic()


@pytest.fixture
def serve_chat(tmp_path: Path) -> Iterator[Any]:
    servers: list[_Server] = []

    def start(handler: type[Any]) -> _Server:
        server = _Server(handler, tmp_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _check(server: _Server, *extra: str) -> tuple[int, list[str]]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hardlight_conformance",
            "check",
            f"wss://127.0.0.1:{server.port}",
            "--app",
            "chat",
            "--ca",
            str(server.cert),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
    )
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    return result.returncode, lines


def _summary(lines: list[str]) -> tuple[int, int, int]:
    match = SUMMARY.match(lines[-1])
    assert match, f"summary line {lines[-1]!r}"
    # the line stays parseable by the plain ``N passed, M failed`` pattern
    assert re.match(r"^\d+ passed, \d+ failed", lines[-1])
    return int(match[1]), int(match[2]), int(match[3] or 0)


@pytest.mark.parametrize("extra", [(), ("--expect-own-joined",)], ids=["default", "strict"])
def test_our_server_has_no_divergence(serve_chat: Any, extra: tuple[str, ...]) -> None:
    code, lines = _check(serve_chat(handler_for("chat")), *extra)
    assert code == 0, lines
    assert lines == ["ok   chat two clients", "1 passed, 0 failed"]


def test_reference_loss_of_own_joined_is_a_named_divergence(serve_chat: Any) -> None:
    code, lines = _check(serve_chat(_chat("RefLike", join=_join_emit_then_subscribe)))
    assert code == 0, lines
    assert _summary(lines) == (1, 0, 2)
    assert lines[0] == "ok   chat two clients"
    divergences = [line for line in lines if line.startswith("DIVERGENCE ")]
    assert len(divergences) == 2, lines
    for who, user in (("client A (alice)", "alice"), ("client B (bob)", "bob")):
        (line,) = [d for d in divergences if who in d]
        assert line.startswith("DIVERGENCE chat two clients: own-event-after-subscribe lost: ")
        assert f"never got its own Joined(user='{user}') on topic 'chat-room" in line
        assert "documented reference behaviour" in line
        assert "fact 14" in line


def test_only_the_lost_own_joined_is_reported(serve_chat: Any) -> None:
    # the failing reference runs: bob (who joins second) misses his own Joined, alice does not
    code, lines = _check(serve_chat(_chat("BobLoses", join=_join_bob_loses_own)))
    assert code == 0, lines
    assert _summary(lines) == (1, 0, 1)
    (line,) = [line for line in lines if line.startswith("DIVERGENCE ")]
    assert "client B (bob) never got its own Joined(user='bob')" in line
    assert "alice" not in line


def test_strict_check_fails_on_the_lost_own_joined(serve_chat: Any) -> None:
    server = serve_chat(_chat("RefLike", join=_join_emit_then_subscribe))
    code, lines = _check(server, "--expect-own-joined", "--wait", "1")
    assert code == 1, lines
    assert _summary(lines) == (0, 1, 0)
    assert not [line for line in lines if line.startswith("DIVERGENCE")]
    assert lines[0].startswith(
        "FAIL chat two clients: TimeoutError: waited 1.0 s for client A (alice)'s event "
        "Joined(user='alice') on topic 'chat-room"
    ), lines
    assert "after its own join('room" in lines[0]


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        (
            {"join": _join_without_event},
            "waited 1.0 s for client A (alice)'s event Joined(user='bob') on topic 'chat-room",
        ),
        (
            {"leave": _leave_without_event},
            f"waited 1.0 s for client A (alice)'s event {Left(user='bob')!r} on topic 'chat-room",
        ),
    ],
    ids=["others-miss-joined", "left-never-sent"],
)
def test_any_other_missing_event_fails_saying_what_it_waited_for(
    serve_chat: Any, methods: dict[str, Any], expected: str
) -> None:
    code, lines = _check(serve_chat(_chat("Drops", **methods)), "--wait", "1")
    assert code == 1, lines
    assert _summary(lines) == (0, 1, 0)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"FAIL chat two clients: TimeoutError: {expected}"), lines
    assert not [line for line in lines if line.startswith("DIVERGENCE")]


def test_every_timeout_says_what_it_waited_for(tmp_path: Path) -> None:
    # a listener that completes TCP but never speaks: TLS, the upgrade and the probe all hang
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "hardlight_conformance",
                "check",
                f"wss://127.0.0.1:{port}",
                "--app",
                "counter",
                "--insecure",
                "--wait",
                "0.5",
            ],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT,
        )
    finally:
        silent.close()
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1, lines
    assert lines[-1] == "0 passed, 4 failed"
    fails = lines[:-1]
    assert len(fails) == 4, lines
    # our own waits say "waited 0.5 s for ..."; an adapter's connect timeout may instead raise
    # the core's ConnectError ("could not connect to ADDRESS: no connection within 0.5 s")
    said_what = re.compile(r"waited 0\.5 s for \S|no connection within 0\.5 s")
    for line in fails:
        assert re.match(r"^FAIL [^:]+: \w+: \S", line), line  # never an empty message
        assert said_what.search(line), line
    connects = [line for line in fails if "connect to" in line and f"127.0.0.1:{port}" in line]
    assert len(connects) == 3, lines  # seed flow, levels, burst: each connects first
    assert any("waited 0.5 s for the TLS handshake with 127.0.0.1" in line for line in fails)


async def _join_too_slowly(self: Any, room: str, user: str) -> int:
    await asyncio.sleep(2.0)
    return 0


def test_a_call_timeout_names_the_client_and_the_call(serve_chat: Any) -> None:
    code, lines = _check(serve_chat(_chat("Slow", join=_join_too_slowly)), "--wait", "0.5")
    assert code == 1, lines
    assert _summary(lines) == (0, 1, 0)
    assert lines[0].startswith(
        "FAIL chat two clients: CallTimeout: waited 0.5 s for client A (alice)'s answer to "
        "join('room"
    ), lines
