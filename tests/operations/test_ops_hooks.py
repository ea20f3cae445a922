"""ServerHooks on every adapter: what each hook gets and when, decided once in the core."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))

from hl_harness import SERVER_RUNTIMES, Probe, ProbeHandler, running

import hardlight_anyio
import hardlight_asyncio
import hardlight_threads
from hardlight_core import (
    CallInfo,
    ClientNotConnected,
    ConnectionInfo,
    ConnectionRefused,
    HandlerPanicked,
    Refuse,
    ServerHooks,
)
from hardlight_support import ClientConfig, ServerConfig

WAIT = 10.0


class Recorder:
    """Hooks that record what they get (from any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, Any]] = []
        self.changed = threading.Condition(self.lock)
        self.hooks = ServerHooks(
            on_connect=lambda i: self._add("connect", i),
            on_refuse=lambda i: self._add("refuse", i),
            on_disconnect=lambda i: self._add("disconnect", i),
            on_call_start=lambda i: self._add("start", i),
            on_call_end=lambda i: self._add("end", (i, i.outcome, i.duration)),
        )

    def _add(self, what: str, info: Any) -> None:
        with self.changed:
            self.events.append((what, info))
            self.changed.notify_all()

    def wait_for(self, predicate: Any, what: str) -> None:
        deadline = time.monotonic() + WAIT
        with self.changed:
            while not predicate(self.events):
                left = deadline - time.monotonic()
                assert left > 0, f"{what}: saw {self.events}"
                self.changed.wait(left)

    def of(self, kind: str) -> list[Any]:
        with self.lock:
            return [info for what, info in self.events if what == kind]


def _broken(info: Any) -> None:
    raise RuntimeError("a broken metrics hook")


@pytest.fixture(params=SERVER_RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


def _client(port: int, fingerprint: str) -> hardlight_threads.Client:
    config = ClientConfig.pinned(
        f"localhost:{port}", fingerprint, call_timeout=WAIT, connect_timeout=WAIT
    )
    client = hardlight_threads.Client(Probe, config)
    client.connect()
    return client


def test_hooks_see_connections_and_calls(runtime: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "hardlight")
    recorder = Recorder()
    config = ServerConfig.self_signed("localhost:0")
    assert config.fingerprint is not None
    with running(runtime, config, ProbeHandler) as server:
        server.server.add_hooks(ServerHooks(on_call_end=_broken, on_connect=_broken))
        server.server.add_hooks(recorder.hooks)
        client = _client(server.port, config.fingerprint)
        try:
            assert client.call("echo", 3) == 3
            with pytest.raises(HandlerPanicked):
                client.call("boom")
            assert client.call("wait", 200) == 200
            # a call still running when its connection ends is cancelled
            result: dict[str, Any] = {}

            def long_call() -> None:
                try:
                    client.call("wait", 5000)
                except ClientNotConnected as exc:
                    result["error"] = exc

            thread = threading.Thread(target=long_call)
            thread.start()
            recorder.wait_for(lambda ev: len([e for e in ev if e[0] == "start"]) == 4, "4 starts")
        finally:
            client.disconnect()
        thread.join(WAIT)
        assert isinstance(result.get("error"), ClientNotConnected)
        recorder.wait_for(lambda ev: any(e[0] == "disconnect" for e in ev), "a disconnect")
        recorder.wait_for(lambda ev: len([e for e in ev if e[0] == "end"]) == 4, "4 ends")

    (connect,) = recorder.of("connect")
    assert isinstance(connect, ConnectionInfo)
    assert connect.peer[0] == "127.0.0.1" and connect.path == "/" and connect.code is None
    starts: list[CallInfo] = recorder.of("start")
    assert [(s.service, s.method, s.peer) for s in starts] == [
        ("Probe", m, connect.peer) for m in ("echo", "boom", "wait", "wait")
    ]
    ends = recorder.of("end")
    # the same object at start and end, its outcome and duration filled in at the end
    assert [info for info, _, _ in ends] == starts
    outcomes = [outcome for _, outcome, _ in ends]
    assert outcomes == ["ok", "HandlerPanicked", "ok", "cancelled"]
    durations = [duration for _, _, duration in ends]
    assert all(d is not None and d >= 0 for d in durations)
    assert 0.15 < durations[2] < 5.0  # wait(200) measured on the adapter's clock
    assert isinstance(ends[1][0].error, ValueError)
    assert [info.failed for info, _, _ in ends] == [False, True, False, True]
    (disconnect,) = recorder.of("disconnect")
    assert disconnect.peer == connect.peer
    assert disconnect.code == 1000
    assert disconnect.duration is not None and disconnect.duration > 0.15
    assert not recorder.of("refuse")
    # the broken hook raised at every call end and at the connect: logged, ignored
    broken = [r for r in caplog.records if "a server hook" in r.getMessage()]
    assert len(broken) == 5
    assert "on_call_end" in broken[-1].getMessage()


def test_refusals_reach_on_refuse(runtime: str) -> None:
    def deny(info: Any) -> None:
        raise Refuse("no entry", 401)

    recorder = Recorder()
    config = ServerConfig.self_signed("localhost:0", authenticate=deny)
    assert config.fingerprint is not None
    with running(runtime, config, ProbeHandler) as server:
        server.server.add_hooks(recorder.hooks)
        with pytest.raises(ConnectionRefused):
            _client(server.port, config.fingerprint)
        recorder.wait_for(lambda ev: bool(ev), "a refusal")
    (refusal,) = recorder.of("refuse")
    assert (refusal.code, refusal.reason, refusal.path) == (401, "no entry", "/")
    assert refusal.peer[0] == "127.0.0.1"
    assert not recorder.of("connect") and not recorder.of("disconnect")


def test_every_server_takes_hooks_and_removes_them() -> None:
    hooks = ServerHooks(on_connect=print)
    config = ServerConfig.self_signed("localhost:0")
    for module in (hardlight_asyncio, hardlight_anyio, hardlight_threads):
        server = module.Server(config, ProbeHandler, hooks=hooks)
        assert server.core.hooks == (hooks,)
        server.remove_hooks(hooks)
        assert server.core.hooks == ()
        with pytest.raises(TypeError):
            server.add_hooks(print)


@pytest.fixture
def no_hooks_at_debug() -> Iterator[None]:
    logger = logging.getLogger("hardlight")
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)


def test_without_hooks_or_debug_nothing_is_recorded(no_hooks_at_debug: None) -> None:
    """The fast path: no CallInfo is made when nothing observes calls."""
    seen: list[Any] = []
    config = ServerConfig.self_signed("localhost:0")
    assert config.fingerprint is not None
    with running("asyncio", config, ProbeHandler) as server:
        core = server.server.core
        original = core._notify
        core._notify = lambda name, info: seen.append(name) or original(name, info)
        client = _client(server.port, config.fingerprint)
        try:
            assert client.call("echo", 1) == 1
        finally:
            client.disconnect()
    assert seen == []
