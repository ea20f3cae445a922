"""``serve`` and ``check`` against each other, for every adapter as server and as client."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardlight_conformance._live import Context, client_tls, run_scenarios

APPS = ["counter", "pet", "todo", "chat"]


def _available(adapter: str) -> bool:
    module = importlib.import_module(f"hardlight_{adapter}")
    return hasattr(module, "Server") and hasattr(module, "Client")


ADAPTERS = [a for a in ("asyncio", "anyio", "threads") if _available(a)]


class Served:
    """A ``serve`` subprocess and how to reach it."""

    def __init__(self, proc: subprocess.Popen[str], port: int, cert: Path) -> None:
        self.proc = proc
        self.port = port
        self.cert = cert


def _serve(app: str, adapter: str, tmp: Path) -> Iterator[Served]:
    cert = tmp / f"{app}-{adapter}.pem"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hardlight_conformance",
            "serve",
            "--app",
            app,
            "--port",
            "0",
            "--self-signed",
            "--write-cert",
            str(cert),
            "--adapter",
            adapter,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: the server prints it once bound or dies
        assert line.startswith("listening on "), f"serve said {line!r}"
        port = int(line.rsplit(":", 1)[1])
        yield Served(proc, port, cert)
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, f"serve exited {proc.returncode}: {out}"
    assert "stopped" in out


@pytest.fixture(
    scope="module",
    params=[(a, s) for s in ADAPTERS for a in APPS],
    ids=lambda p: f"{p[0]}-server_{p[1]}",
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Served]]:
    app, adapter = request.param
    yield from ((app, s) for s in _serve(app, adapter, tmp_path_factory.mktemp("serve")))


@pytest.mark.parametrize("client_adapter", ADAPTERS)
def test_check_passes_against_serve(served: tuple[str, Served], client_adapter: str) -> None:
    app, server = served
    ctx = Context(
        address=f"localhost:{server.port}",
        tls=client_tls(False, str(server.cert)),
        adapter=client_adapter,
        compression_level=6,
        expect_own_joined=True,
    )
    lines: list[str] = []
    outcome = asyncio.run(run_scenarios(ctx, app, lines.append))
    assert outcome.failed == 0, "\n".join(lines)
    assert outcome.passed >= 1
    assert outcome.divergences == 0, "\n".join(lines)  # ours delivers every event
    assert not [line for line in lines if not line.startswith("ok   ")], lines


def test_check_cli_reports_failures_and_exit_code(tmp_path: Path) -> None:
    # nothing listens on this port: every scenario must fail, and the exit status says so
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hardlight_conformance",
            "check",
            "wss://127.0.0.1:9",
            "--app",
            "pet",
            "--insecure",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"
