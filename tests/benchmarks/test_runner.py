"""The side-by-side runner (``benchmarks/run.py``), each workload on a tiny count.

Checks that every workload runs and reports what it claims; no timing is asserted
(the runner is run on purpose, not in the suite).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hardlight_support import ServerTLS

RUNNER = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
TLS = ServerTLS.self_signed("localhost", "127.0.0.1")


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hardlight_bench_runner", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


run = _runner()


def _serve(app: str, tmp: Path) -> tuple[Any, int]:
    proc, port = run._start_server("hardlight-chat" if app == "chat" else "hardlight", tmp, TLS)
    return proc, port


def test_hardlight_workloads_report_every_figure() -> None:
    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp_name:
            proc, port = _serve("counter", Path(tmp_name))
            try:
                peer = run.HardLightPeer("asyncio", 6, port, TLS)
                times = await run.sequential_times(peer, 20)
                assert len(times) == 20 and all(t > 0 for t in times)
                row: dict[str, Any] = {"sequential": run._latency(times)}
                if run._can_pin():
                    with run.OneCPU(proc.pid):
                        assert len(os.sched_getaffinity(proc.pid)) == 1
                        row["sequential_one_cpu"] = run._latency(
                            await run.sequential_times(peer, 20)
                        )
                    assert len(os.sched_getaffinity(proc.pid)) == len(os.sched_getaffinity(0))
                row["pipelined"] = await run.pipelined(peer, 300, inflight=50)
                row["connections_100x10"] = await run.many_connections(peer, 4, conns=5, inflight=2)
                row["idle_memory"] = await run.idle_memory(peer, proc.pid, 5)
                return row
            finally:
                proc.terminate()
                proc.wait(10)

    row = asyncio.run(main())
    assert row["sequential"]["p50_us"] <= row["sequential"]["p99_us"]
    assert row["pipelined"]["calls_per_s"] > 0
    assert row["connections_100x10"]["calls_per_s"] > 0
    assert "kib_per_connection" in row["idle_memory"]


def test_picows_peer_workloads_report_every_figure() -> None:
    pytest.importorskip(
        "picows", reason="picows is in the bench extra: pip install -e '.[test,bench]'"
    )

    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp_name:
            proc, port = run._start_server("picows", Path(tmp_name), TLS)
            try:
                peer = run.PicowsPeer(port, TLS)
                times = await run.sequential_times(peer, 20)
                assert len(times) == 20 and all(t > 0 for t in times)
                return {
                    "sequential": run._latency(times),
                    "pipelined": await run.pipelined(peer, 300, inflight=50),
                    "connections_100x10": await run.many_connections(
                        peer, 4, conns=5, inflight=2
                    ),
                    "idle_memory": await run.idle_memory(peer, proc.pid, 5),
                }
            finally:
                proc.terminate()
                proc.wait(10)

    row = asyncio.run(main())
    assert row["sequential"]["p50_us"] <= row["sequential"]["p99_us"]
    assert row["pipelined"]["calls_per_s"] > 0
    assert row["connections_100x10"]["calls_per_s"] > 0
    assert "kib_per_connection" in row["idle_memory"]


def test_fanout_timed_at_the_server_over_several_client_processes() -> None:
    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp_name:
            return await run.fanout_at_server(  # type: ignore[no-any-return]
                Path(tmp_name), TLS, sizes=(3, 8), levels=(0, 6), repeats=3, workers=3,
                warmup=1,
            )

    result = asyncio.run(main())
    assert result["client_processes"] == 3
    for size in (3, 8):
        for level in (0, 6):
            row = result[f"subscribers_{size}_level_{level}"]
            assert row["rounds"] == 3
            assert 0 < row["first_receipt_p50_ms"] <= row["last_receipt_p50_ms"]
            assert row["last_receipt_p50_ms"] <= row["last_receipt_p99_ms"]
            assert row["server_written_p50_ms"] > 0


def test_fd_limit_is_raised_not_lowered() -> None:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert run.raise_fd_limit(16) >= min(16, soft)
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == soft


def test_fanout_reaches_every_subscriber_every_time() -> None:
    async def main() -> dict[str, float]:
        with tempfile.TemporaryDirectory() as tmp_name:
            proc, port = _serve("chat", Path(tmp_name))
            try:
                return await run.fanout(port, TLS, 6, 3)  # type: ignore[no-any-return]
            finally:
                proc.terminate()
                proc.wait(10)

    result = asyncio.run(main())
    assert 0 < result["first_receiver_p50_ms"] <= result["last_receiver_p50_ms"]
    assert result["events_per_s"] > 0


def test_floor_and_targets() -> None:
    floor = run.ping_pong_floor(50)
    assert floor["spread_p50_us"] > 0
    if run._can_pin():
        assert floor["one_cpu_p50_us"] > 0
    seq = {"p50_us": 100.0, "p99_us": 200.0, "calls_per_s": 1.0}
    results: dict[str, Any] = {
        "hardlight-asyncio-l6": {
            "sequential": seq,
            "sequential_one_cpu": {**seq, "p50_us": 50.0},
            "pipelined": {"calls_per_s": 300.0},
            "connections_100x10": {"calls_per_s": 10.0},
        },
        "websockets-msgspec": {
            "sequential": {**seq, "p50_us": 150.0},
            "sequential_one_cpu": {**seq, "p50_us": 50.0},
            "pipelined": {"calls_per_s": 200.0},
            "connections_100x10": {"calls_per_s": 10.0},
        },
        "fanout": {"subscribers_1000": {"last_receiver_p50_ms": 20.0}},
        "fanout_at_server": {
            "client_processes": 4,
            "subscribers_1000_level_6": {
                "last_receipt_p50_ms": 12.0, "last_receipt_p99_ms": 15.0,
                "first_receipt_p50_ms": 1.0, "server_written_p50_ms": 8.0, "rounds": 20,
            },
        },
    }
    results["ratios"] = run.ratios(results)
    verdicts = {name: t["met"] for name, t in run.targets(results).items()}
    assert verdicts == {
        "sequential_p50_vs_picows_at_most": None,  # no picows row: not measured
        "pipelined_vs_picows_at_least": None,
        "connections_100x10_vs_picows_at_least": None,
        "fanout_1000_level_6_at_server_p50_ms_under": True,  # 12.0
        "sequential_p50_vs_websockets_at_most": True,  # 0.67
        "sequential_p50_vs_grpcio_at_most": None,  # no grpcio row: not measured
        "sequential_one_cpu_p50_vs_websockets_at_most": False,  # 1.0
        "sequential_one_cpu_p50_vs_grpcio_at_most": None,
        "pipelined_vs_websockets_at_least": True,  # 1.5
        "fanout_1000_p50_ms_under": False,
    }
    results["picows-msgspec"] = {
        "sequential": {**seq, "p50_us": 100.0},
        "pipelined": {"calls_per_s": 400.0},
        "connections_100x10": {"calls_per_s": 9.0},
    }
    results["ratios"] = run.ratios(results)
    verdicts = {name: t["met"] for name, t in run.targets(results).items()}
    assert verdicts["sequential_p50_vs_picows_at_most"] is True  # 1.0
    assert verdicts["pipelined_vs_picows_at_least"] is False  # 0.75
    assert verdicts["connections_100x10_vs_picows_at_least"] is True  # 1.11
    text = run.table(results)
    assert "hardlight-asyncio-l6" in text and "subscribers_1000_level_6" in text
    pytest.importorskip(
        "matplotlib", reason="matplotlib (the chart) is in the bench extra: pip install '.[bench]'"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        png = Path(tmp_name) / "results.png"
        assert run.chart(results, png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_codec_micro_benchmarks_are_collected_into_the_results() -> None:
    codec = run.codec_benchmarks(
        "--benchmark-max-time=0.001", "--benchmark-min-rounds=1", "--benchmark-warmup=off"
    )
    assert codec is not None
    kinds = ("request", "response", "event", "state_change")
    for kind in kinds:
        assert codec[f"test_envelope_rkyv_roundtrip[{kind}]"]["mean_us"] > 0
        assert codec[f"test_envelope_msgspec_roundtrip[{kind}]"]["mean_us"] > 0


def test_workers_comparison_reports_both_servers() -> None:
    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp_name:
            return await run.workers_comparison(  # type: ignore[no-any-return]
                Path(tmp_name), TLS, rounds=1, duration=0.3, procs=1, conns=2, inflight=4,
                subscribers=20, repeats=2, fanout_clients=2,
            )

    results = asyncio.run(asyncio.wait_for(main(), 300))
    for n in (1, 2):
        row = results[f"workers_{n}"]
        assert row["pipelined"]["calls_per_s"] > 0 and row["pipelined"]["calls"] > 0
        assert row["fanout_at_server"]["rounds"] == 2
        assert row["fanout_at_server"]["last_receipt_p50_ms"] > 0
    text = run.workers_table(results)
    assert text.splitlines()[1].split()[0] == "1" and text.splitlines()[2].split()[0] == "2"
