"""``python -m hardlight serve module:Handler --workers 2``, run as a user would: connections
land on both workers, an event crosses from one worker to the other exactly once, SIGTERM
stops everything with exit 0. Every wait is bounded; the processes are killed at the end."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from workersvc import Pids

from hardlight_asyncio import Client
from hardlight_core import u32
from hardlight_support import ClientConfig

HERE = Path(__file__).resolve().parent
WAIT = 60.0  # spawn imports everything afresh in each worker: slow on a loaded machine


class Served:
    """The supervisor process; its standard output read line by line, with bounded waits."""

    def __init__(self, cwd: Path, *args: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(cwd), env.get("PYTHONPATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hardlight", "serve", "workersvc:PidHandler", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_errors, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line)

    def expect(self, prefix: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {prefix!r} line; saw {self.seen}; {''.join(self.errors)}")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "workersvc.py").write_text((HERE / "workersvc.py").read_text())
    return tmp_path


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        s.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _connect(port: int) -> Client[Any]:
    config = ClientConfig(f"127.0.0.1:{port}", plaintext=True, call_timeout=20.0)
    client = Client(Pids, config)
    await asyncio.wait_for(client.connect(), 20)
    return client


async def _cross_worker_events(port: int, pids: set[int]) -> None:
    clients: dict[int, list[Client[Any]]] = {pid: [] for pid in pids}
    try:
        for _ in range(60):  # SO_REUSEPORT hashes each connection's ports: both get some
            client = await _connect(port)
            pid = await client.pid()
            assert pid in pids, f"answered by {pid}, not a worker {pids}"
            clients[pid].append(client)
            if all(len(c) >= 2 for c in clients.values()):
                break
        assert all(len(c) >= 2 for c in clients.values()), {p: len(c) for p, c in clients.items()}
        a, b = sorted(pids)
        remote, local, emitter = clients[a][0], clients[b][0], clients[b][1]
        remote_events, local_events = remote.subscribe(), local.subscribe()
        assert await remote.join("room") == a
        assert await local.join("room") == b
        # the subscription reaches the hub asynchronously: probe until worker A gets one
        for probe in range(1000, 1100):
            await emitter.shout("room", probe)
            if await remote_events.get(0.1) is not None:
                break
        else:
            raise AssertionError("no event crossed from worker B to worker A")
        await asyncio.sleep(0.3)
        for events in (remote_events, local_events):  # drop the probes
            while await events.get(0.05) is not None:
                pass
        assert await emitter.shout("room", 7) == b
        for events in (remote_events, local_events):
            got = []
            while (event := await events.get(0.5)) is not None:
                got.append(event.decode(u32))
            assert got == [7], got  # exactly once, on the other worker and on its own
    finally:
        for group in clients.values():
            for client in group:
                await client.disconnect()


@pytest.mark.parametrize("adapter", ["asyncio", "threads", "anyio"])
def test_serve_workers_spreads_connections_shares_events_and_stops_on_sigterm(
    workdir: Path, served: list[Served], adapter: str
) -> None:
    s = Served(workdir, "--plaintext", "--port", "0", "--workers", "2", "--adapter", adapter,
               "--grace", "2")
    served.append(s)
    port = int(s.expect("listening on ").rpartition(":")[2])
    pids = {int(p) for p in s.expect("workers 2: pids ").split()[3:]}
    assert len(pids) == 2 and s.proc.pid not in pids
    asyncio.run(asyncio.wait_for(_cross_worker_events(port, pids), 120))
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(30) == 0, "".join(s.errors)
    s.expect("stopped", 5)
    assert not any(map(_alive, pids))
    log = "".join(s.errors)
    assert log.count("hardlight server stopping on SIGTERM") == 2, log
    assert "supervisor stopped" in log


def test_serve_workers_refuses_trio_and_a_port_in_use(workdir: Path, served: list[Served]) -> None:
    s = Served(workdir, "--plaintext", "--port", "0", "--workers", "2", "--adapter", "trio")
    served.append(s)
    assert s.proc.wait(30) == 2
    assert "--workers shares events on an asyncio bus" in "".join(s.errors)
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        s = Served(workdir, "--plaintext", "--port", str(port), "--workers", "2")
        served.append(s)
        assert s.proc.wait(30) == 1
        assert "already in use" in "".join(s.errors)
