"""The supervisor on its own (``run_workers``: a dying worker is logged and restarted within
its budget), ``Server(config, Handler, workers=2).run_workers()`` from a user's script, and
``ServerConfig(reuse_port=True)`` on every adapter's bind."""

from __future__ import annotations

import asyncio
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_serve_workers import HERE, _alive, _connect
from workersvc import PidHandler

import hardlight_anyio
import hardlight_threads
from hardlight_asyncio import Server
from hardlight_support import ServerConfig

SUPERVISED = """
import functools, logging, os, signal, sys, time
from hardlight_support.workers import current_worker, notify_ready, run_workers

def serve_one(lifetime, index):
    info = current_worker()
    assert info is not None and info.index == index and info.count == 2 and info.hub is None
    notify_ready()
    if index == 1:
        time.sleep(lifetime)
        sys.exit(3)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        time.sleep(0.05)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    status = run_workers(2, functools.partial(serve_one, 0.3), restarts=1,
                         on_ready=lambda pids: print("ready", *pids, flush=True))
    print("status", status, flush=True)
"""

SCRIPT = """
from hardlight_asyncio import Server
from hardlight_support import ServerConfig
from workersvc import PidHandler

if __name__ == "__main__":
    server = Server(ServerConfig.plain("127.0.0.1:0"), PidHandler, workers=2)
    status = server.run_workers(
        on_ready=lambda address, pids: print("listening on", address[1], *pids, flush=True)
    )
    print("status", status, flush=True)
"""


def _script(tmp: Path, name: str, text: str) -> subprocess.Popen[str]:
    (tmp / name).write_text(text)
    (tmp / "workersvc.py").write_text((HERE / "workersvc.py").read_text())
    return subprocess.Popen(
        [sys.executable, name], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_dying_worker_is_logged_and_restarted_within_the_budget(tmp_path: Path) -> None:
    proc = _script(tmp_path, "supervised.py", SUPERVISED)
    try:
        out, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # worker 1 died twice by now; worker 0 still serves
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert out.splitlines()[0].startswith("ready ")
    assert "status 1" in out  # a worker exited with 3: not a clean stop
    assert err.count("worker 1 (pid") == 2 and err.count("exited with status 3") == 2, err
    assert err.count("worker 1 started") == 2  # started, restarted once, then left down
    assert "supervisor stopping on SIGTERM" in err


def test_server_workers_run_workers_from_a_script(tmp_path: Path) -> None:
    proc = _script(tmp_path, "app.py", SCRIPT)
    try:
        assert proc.stdout is not None
        assert select.select([proc.stdout], [], [], 60)[0], "the script did not listen in 60 s"
        line = proc.stdout.readline()
        assert line.startswith("listening on "), (line, proc.stderr.read() if proc.stderr else "")
        port, *pids = map(int, line.split()[2:])

        async def calls() -> set[int]:
            seen: set[int] = set()
            for _ in range(40):
                client = await _connect(port)
                seen.add(await client.pid())
                await client.disconnect()
                if len(seen) == 2:
                    break
            return seen

        assert asyncio.run(asyncio.wait_for(calls(), 60)) == set(pids)
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=30)
        assert "status 0" in out
        assert proc.returncode == 0
        assert not any(map(_alive, pids))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_workers_need_run_workers_and_no_bus() -> None:
    config = ServerConfig.plain("127.0.0.1:0")
    server = Server(config, PidHandler, workers=2)
    with pytest.raises(RuntimeError, match="run_workers"):
        asyncio.run(server.serve_forever())
    with pytest.raises(ValueError, match="no bus"):
        Server(config, PidHandler, workers=2, bus=object())
    with pytest.raises(ValueError, match="at least 1"):
        Server(config, PidHandler, workers=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("adapter", ["asyncio", "asyncio-tls", "anyio", "threads"])
def test_reuse_port_lets_two_servers_listen_on_one_port(adapter: str) -> None:
    port = _free_port()
    if adapter == "asyncio-tls":
        config = ServerConfig.self_signed(f"127.0.0.1:{port}", reuse_port=True)
    else:
        config = ServerConfig.plain(f"127.0.0.1:{port}", reuse_port=True)
    plain_config = ServerConfig.plain(f"127.0.0.1:{port}")

    async def main() -> None:
        if adapter == "threads":
            a = hardlight_threads.Server(config, PidHandler)
            b = hardlight_threads.Server(config, PidHandler)
            a.start()
            try:
                b.start()
                assert a.port == b.port == port
                b.stop(0.1)
                with pytest.raises(OSError):
                    hardlight_threads.Server(plain_config, PidHandler).start()
            finally:
                a.stop(0.1)
            return
        if adapter == "anyio":
            async with hardlight_anyio.Server(config, PidHandler) as first:
                async with hardlight_anyio.Server(config, PidHandler) as second:
                    assert first.port == second.port == port
                    await second.stop(0.1)
                with pytest.raises(OSError):
                    async with hardlight_anyio.Server(plain_config, PidHandler):
                        pass
                await first.stop(0.1)
            return
        servers: list[Any] = [Server(config, PidHandler), Server(config, PidHandler)]
        for server in servers:
            await server.start()
        try:
            assert {s.port for s in servers} == {port}
            with pytest.raises(OSError):
                await Server(plain_config, PidHandler).start()
            client = await _connect(port) if adapter == "asyncio" else None
            if client is not None:
                assert await client.pid() > 0
                await client.disconnect()
        finally:
            for server in servers:
                await server.stop(0.1)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_reuse_port_is_refused_clearly_without_so_reuseport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(ValueError, match="no SO_REUSEPORT"):
        ServerConfig.plain("127.0.0.1:0", reuse_port=True)
    ServerConfig.plain("127.0.0.1:0")  # without it, nothing changes
