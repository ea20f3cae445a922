"""Helpers for the operations tests: a slow service, and a server process to signal."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from hardlight_core import Service, u32

ROOT = Path(__file__).resolve().parents[2]


class Slow(Service):
    """The service the server processes serve (declared the same in their module)."""

    async def slow(self, ms: u32) -> u32: ...

    async def echo(self, x: u32) -> u32: ...


#: a user module as written to a temporary directory for the server processes
SERVICE_MODULE = """
import anyio
from hardlight_core import Handler, Service, u32


class Slow(Service):
    async def slow(self, ms: u32) -> u32: ...

    async def echo(self, x: u32) -> u32: ...


class SlowHandler(Slow, Handler):
    async def slow(self, ms: u32) -> u32:
        print("call started", flush=True)
        await anyio.sleep(ms / 1000)
        return ms

    async def echo(self, x: u32) -> u32:
        return x


NotAHandler = 42
"""


class Process:
    """A child process whose standard output is read line by line, with bounded waits."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(cwd), env.get("PYTHONPATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.stderr_text = ""
        self._out = threading.Thread(target=self._read_out, daemon=True)
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out.start()
        self._err.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr_text = self.proc.stderr.read()

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        """The next line starting with ``prefix`` (fails after ``timeout`` or at EOF)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no line {prefix!r} within {timeout}s; saw {self.seen}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, (
                f"process ended before {prefix!r}; saw {self.seen}; stderr:\n{self.stderr()}"
            )
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def wait(self, timeout: float) -> int:
        """The exit status, waiting at most ``timeout`` seconds."""
        return self.proc.wait(timeout)

    def rest(self) -> list[str]:
        """The remaining output lines (after the process ended)."""
        self._out.join(5)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return self.seen
            if line is not None:
                self.seen.append(line)

    def stderr(self) -> str:
        self._err.join(5)
        return self.stderr_text

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.join(5)
        self._err.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
