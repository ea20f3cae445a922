"""Every recorded reference session replays through our cores (both chunkings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardlight_apps import counter
from hardlight_conformance import _replay
from hardlight_conformance._data import traffic_dir
from hardlight_conformance._replay import replay_session
from hardlight_conformance.cli import main

SESSIONS = sorted(traffic_dir().glob("*.jsonl"))


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["chunks", "bytes"])
@pytest.mark.parametrize("path", SESSIONS, ids=lambda p: p.name.removesuffix(".jsonl"))
def test_session_replays(path: Path, byte_by_byte: bool) -> None:
    result = replay_session(path, byte_by_byte=byte_by_byte)
    assert result.ok, result.failures
    assert result.checked > 0 or result.divergences


def test_divergences_are_named_where_they_apply() -> None:
    assert "refused-handshake-closes" in replay_session(
        traffic_dir() / "handshake_failures.jsonl"
    ).divergences
    assert "protocol-error-closes" in replay_session(
        traffic_dir() / "misbehave_misbehave.jsonl"
    ).divergences
    assert "own-joined-delivered" in replay_session(traffic_dir() / "chat_seed.jsonl").divergences


def test_a_wrong_server_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    async def off_by_one(self: counter.CounterHandler, amount: int) -> None:
        self.state.counter = (self.state.counter + amount + 1) & 0xFFFFFFFF

    monkeypatch.setattr(counter.CounterHandler, "increment", off_by_one)
    result = replay_session(traffic_dir() / "counter_full.jsonl")
    assert not result.ok
    assert any("differ" in f or "state" in f for f in result.failures)


def test_a_wrong_client_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = _replay.StateMirror.apply

    def drop_updates(self: _replay.StateMirror, updates: list) -> list[int]:  # type: ignore[type-arg]
        return original(self, updates[1:])

    monkeypatch.setattr(_replay.StateMirror, "apply", drop_updates)
    assert not replay_session(traffic_dir() / "counter_seed.jsonl").ok


def test_cli_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--no-byte-by-byte"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"{len(SESSIONS)} passed, 0 failed"
    assert any(line.startswith("divergence ") for line in lines)
