"""The conformance ``check`` scenarios against every app served by HardLightApp under real
ASGI servers (as tests/conformance/test_live_cli.py runs them against ``serve``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from asgi_harness import serving

from hardlight_apps import counter
from hardlight_asgi import HardLightApp
from hardlight_conformance._live import Context, client_tls, run_scenarios
from hardlight_conformance._serve_cli import handler_for

APPS = ["counter", "pet", "todo", "chat"]
SERVERS = ["uvicorn-wsproto", "hypercorn", "hypercorn-trio"]


def _app(name: str) -> tuple[HardLightApp, list[object]]:
    """The app as ``serve`` runs it: counter greets every new topic with ServerSentTest."""
    app = HardLightApp(handler_for(name))
    background = []
    if name == "counter":
        emitter = app.event_emitter(counter.CounterEvent)
        notifier = app.topic_notifier()

        async def greet() -> None:
            async for change in notifier:
                event = counter.notifier_reaction(change)
                if event is not None:
                    await emitter.emit(change.topic, event)

        background.append(greet)
    return app, background


@pytest.mark.parametrize("kind", SERVERS)
@pytest.mark.parametrize("name", APPS)
def test_check_passes_against_the_asgi_app(name: str, kind: str, tmp_path: Path) -> None:
    app, background = _app(name)
    with serving(app, kind, tmp_path, background=background) as server:
        ctx = Context(
            address=server.address,
            tls=client_tls(False, str(server.cert)),
            adapter="asyncio",
            compression_level=6,
            expect_own_joined=True,
        )
        lines: list[str] = []
        outcome = asyncio.run(run_scenarios(ctx, name, lines.append))
    assert outcome.failed == 0, "\n".join(lines)
    assert outcome.passed >= 1
    assert outcome.divergences == 0, "\n".join(lines)
    assert not [line for line in lines if not line.startswith("ok   ")], lines


@pytest.mark.parametrize("client_adapter", ["anyio", "threads"])
def test_check_cli_against_the_asgi_app(client_adapter: str, tmp_path: Path) -> None:
    app, background = _app("chat")
    with serving(app, "uvicorn-wsproto", tmp_path, background=background) as server:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "hardlight_conformance",
                "check",
                f"wss://{server.address}",
                "--app",
                "chat",
                "--fingerprint",
                server.fingerprint,
                "--adapter",
                client_adapter,
                "--expect-own-joined",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.endswith("passed, 0 failed") and not last.startswith("0 "), result.stdout
