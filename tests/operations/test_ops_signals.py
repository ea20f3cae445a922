"""SIGTERM / SIGINT stop every adapter's ``serve_forever()`` / ``run()`` gracefully: a call
in flight is answered, the process exits 0 within the grace, the old handlers come back."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hl_ops import SERVICE_MODULE, Process, Slow

import hardlight_threads
from hardlight_core import ClientNotConnected, ConnectionRefused
from hardlight_support import ClientConfig, StopSignals

GRACE = 3.0
#: startup, the last 1001 close handshakes and interpreter exit, on a loaded machine
BOUND = 6.0

SERVER_SCRIPT = """
import logging
import signal
import sys

import anyio

from hardlight_support import ServerConfig
from slowsvc import SlowHandler

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
adapter = sys.argv[1]
config = ServerConfig.self_signed("127.0.0.1:0", shutdown_grace=float(sys.argv[2]))


def announce(server):
    print(f"listening {server.port} {config.fingerprint}", flush=True)


if adapter == "asyncio":
    import asyncio

    import hardlight_asyncio

    async def main():
        server = hardlight_asyncio.Server(config, SlowHandler)
        await server.start()
        announce(server)
        await server.run()

    asyncio.run(main())
elif adapter in ("anyio", "anyio-trio"):
    import hardlight_anyio

    async def main():
        async with hardlight_anyio.Server(config, SlowHandler) as server:
            announce(server)
            await server.serve_forever()

    anyio.run(main, backend="trio" if adapter == "anyio-trio" else "asyncio")
else:
    import hardlight_threads

    server = hardlight_threads.Server(config, SlowHandler)
    server.start()
    announce(server)
    server.run()
restored = (
    signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
)
print(f"returned, handlers restored: {restored}", flush=True)
"""

RUNTIMES = ("asyncio", "anyio", "anyio-trio", "threads")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "slowsvc.py").write_text(SERVICE_MODULE)
    (tmp_path / "serve_slow.py").write_text(SERVER_SCRIPT)
    return tmp_path


@pytest.fixture
def server_process(workdir: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    started: list[Process] = []

    def start(adapter: str) -> tuple[Process, int, str]:
        proc = Process(["serve_slow.py", adapter, str(GRACE)], workdir)
        started.append(proc)
        _, port, fingerprint = proc.expect("listening").split()
        return proc, int(port), fingerprint

    yield start
    for proc in started:
        proc.kill()


def _client(port: int, fingerprint: str) -> hardlight_threads.Client:
    config = ClientConfig.pinned(
        f"127.0.0.1:{port}", fingerprint, call_timeout=20.0, connect_timeout=10.0
    )
    client = hardlight_threads.Client(Slow, config)
    client.connect()
    return client


def _call_in_thread(
    client: hardlight_threads.Client, ms: int
) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = client.call("slow", ms)
        except BaseException as exc:  # reported by the test
            result["error"] = exc
        result["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("adapter", RUNTIMES)
def test_a_stop_signal_lets_the_running_call_finish_then_exits_0(
    server_process: Any, adapter: str, sig: signal.Signals
) -> None:
    proc, port, fingerprint = server_process(adapter)
    client = _client(port, fingerprint)
    try:
        assert client.call("echo", 7) == 7
        thread, result = _call_in_thread(client, 1000)
        proc.expect("call started")
        signalled = time.monotonic()
        proc.proc.send_signal(sig)
        # stopping: a new connection is refused (503) or cannot connect at all
        time.sleep(0.3)
        assert proc.proc.poll() is None, "the server exited before its call finished"
        with pytest.raises((ConnectionRefused, ClientNotConnected, OSError)):
            _client(port, fingerprint).disconnect()
        thread.join(GRACE + BOUND)
        assert result.get("value") == 1000, result
        status = proc.wait(GRACE + BOUND)
        exited = time.monotonic()
    finally:
        client.disconnect()
    assert status == 0, proc.stderr()
    assert exited - signalled < GRACE + BOUND
    assert result["at"] - signalled > 0.5  # the call ran its second, it was not cut short
    assert "returned, handlers restored: True" in proc.rest()
    assert f"stopping on {sig.name}" in proc.stderr()
    assert "stopped" in proc.stderr()


@pytest.mark.parametrize("adapter", ["asyncio", "threads"])
def test_a_second_signal_acts_as_without_the_server(server_process: Any, adapter: str) -> None:
    proc, port, fingerprint = server_process(adapter)
    client = _client(port, fingerprint)
    try:
        _call_in_thread(client, 5000)
        proc.expect("call started")
        proc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert proc.proc.poll() is None  # the first one waits for the call (grace 3 s)
        proc.proc.send_signal(signal.SIGTERM)
        status = proc.wait(5.0)  # the default action: terminated at once
    finally:
        client.disconnect()
    assert status == -signal.SIGTERM


# -- StopSignals itself ---------------------------------------------------------------------


def test_stop_signals_record_the_first_wake_once_and_restore() -> None:
    before = signal.getsignal(signal.SIGTERM)
    woken: list[int] = []
    with StopSignals(woken.append) as signals:
        assert signals.installed
        signal.raise_signal(signal.SIGTERM)
        assert signals.received == signal.SIGTERM
        assert woken == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) == before
    assert not signals.installed


def test_a_second_signal_goes_to_the_previous_handler() -> None:
    seen: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        with StopSignals(signals=(signal.SIGUSR1,)) as signals:
            signal.raise_signal(signal.SIGUSR1)
            assert seen == [] and signals.received == signal.SIGUSR1
            signal.raise_signal(signal.SIGUSR1)
            assert seen == [signal.SIGUSR1]
            assert not signals.installed  # the previous handler is back at once
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_an_ignored_signal_stays_ignored_and_other_threads_install_nothing() -> None:
    old = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        with StopSignals(signals=(signal.SIGUSR1,)) as signals:
            assert not signals.installed
            assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR1, old)
    installed: list[bool] = []

    def in_a_thread() -> None:
        with StopSignals() as signals:
            installed.append(signals.installed)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(10)
    assert installed == [False]
