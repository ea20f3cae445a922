"""``bench URL --app counter``: round-trip latency and pipelined throughput of ``get()``."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from hardlight_apps import counter
from hardlight_core import HardLightError

from ._live import ADAPTERS, WAIT, Context, client_tls

__all__ = ["add_parser", "measure", "run"]


def add_parser(subparsers: Any) -> None:
    """Register the ``bench`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="measure sequential and pipelined get() against a live server"
    )
    p.add_argument("url")
    p.add_argument("--app", default="counter", choices=["counter"])
    trust = p.add_mutually_exclusive_group(required=True)
    trust.add_argument("--insecure", action="store_true")
    trust.add_argument("--ca", metavar="FILE")
    trust.add_argument("--fingerprint")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--inflight", type=int, default=250)
    p.add_argument("--compress", type=int, default=6, choices=range(10), metavar="N")
    p.add_argument("--adapter", choices=ADAPTERS, default="asyncio")
    p.add_argument(
        "--wait",
        type=float,
        default=WAIT,
        metavar="SECONDS",
        help=f"bound of every single wait: connect, call, disconnect (default {WAIT:g})",
    )


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


async def measure(ctx: Context, n: int, inflight: int) -> dict[str, float]:
    """Sequential then pipelined ``get()``; returns the figures."""
    client = ctx.client(counter.Counter)
    await client.connect()
    try:
        for _ in range(min(200, n)):  # warm-up
            await client.call("get")
        times = []
        for _ in range(n):
            start = time.perf_counter()
            await client.call("get")
            times.append(time.perf_counter() - start)
        total = sum(times)
        times.sort()
        figures = {
            "sequential_p50_us": _percentile(times, 0.5) * 1e6,
            "sequential_p99_us": _percentile(times, 0.99) * 1e6,
            "sequential_calls_per_s": n / total,
        }
        inflight = max(1, min(inflight, 256))
        remaining = n

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await client.call("get")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        figures["pipelined_calls_per_s"] = n / (time.perf_counter() - start)
        return figures
    finally:
        await client.disconnect()


def run(args: argparse.Namespace) -> int:
    """Print the two result lines."""
    if not args.wait > 0:
        raise SystemExit("--wait must be a positive number of seconds")
    ctx = Context(
        address=args.url,
        tls=client_tls(args.insecure, args.ca, args.fingerprint),
        adapter=args.adapter,
        compression_level=args.compress,
        wait=args.wait,
    )
    try:
        f = asyncio.run(measure(ctx, args.n, args.inflight))
    except (OSError, HardLightError) as exc:
        print(f"bench failed: {type(exc).__name__}: {exc}")
        return 2
    print(
        f"sequential n={args.n} p50_us={f['sequential_p50_us']:.0f} "
        f"p99_us={f['sequential_p99_us']:.0f} calls_per_s={f['sequential_calls_per_s']:.0f}"
    )
    print(
        f"pipelined inflight={args.inflight} n={args.n} "
        f"calls_per_s={f['pipelined_calls_per_s']:.0f}"
    )
    return 0
