"""``soak``: many connections calling and receiving events for a while, with random
disconnects and reconnects; reports what was made, answered, failed and lost, and the
server's memory at start and end.

The server runs in its own process (``serve --app counter``) so its memory is measured
alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from hardlight_apps import counter
from hardlight_core import CallTimeout, HardLightError, RpcError
from hardlight_support import ClientConfig, ClientTLS

__all__ = ["SoakReport", "add_parser", "run", "soak"]


@dataclass
class SoakReport:
    """What a soak run saw."""

    connections: int = 0
    seconds: float = 0.0
    connects: int = 0
    disconnects: int = 0
    calls_made: int = 0
    calls_answered: int = 0
    calls_failed_typed: int = 0
    calls_lost: int = 0
    events_received: int = 0
    server_rss_start_kib: int = 0
    server_rss_end_kib: int = 0

    @property
    def ok(self) -> bool:
        """Nothing lost, everything accounted for, memory did not grow past the bound."""
        accounted = self.calls_answered + self.calls_failed_typed + self.calls_lost
        grown = self.server_rss_end_kib - self.server_rss_start_kib
        return (
            self.calls_lost == 0
            and accounted == self.calls_made
            and grown < max(16 * 1024, self.server_rss_start_kib // 4)
        )


def add_parser(subparsers: Any) -> None:
    """Register the ``soak`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "soak", help="connections calling and receiving events, with random disconnects"
    )
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--adapter", choices=["asyncio", "anyio", "threads"], default="asyncio")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _client_loop(
    index: int,
    address: str,
    fingerprint: str,
    deadline: float,
    rng: random.Random,
    report: SoakReport,
) -> None:
    from hardlight_asyncio import Client

    while time.monotonic() < deadline:
        client = Client(
            counter.Counter,
            ClientConfig(
                address=address,
                tls=ClientTLS.pinned(fingerprint),
                call_timeout=10.0,
                compression_level=rng.choice([0, 1, 6, 9]),
            ),
        )
        try:
            await client.connect()
        except (TimeoutError, OSError, HardLightError):
            await asyncio.sleep(0.05)
            continue
        report.connects += 1

        async def count_events(c: Any = client) -> None:
            async for _event in c.subscribe():
                report.events_received += 1

        events = asyncio.create_task(count_events())
        try:
            for _ in range(rng.randrange(5, 60)):
                if time.monotonic() >= deadline:
                    break
                burst = rng.randrange(1, 20)
                report.calls_made += burst
                results = await asyncio.gather(
                    *(_one_call(client, rng) for _ in range(burst)), return_exceptions=True
                )
                for r in results:
                    if isinstance(r, CallTimeout):
                        report.calls_lost += 1
                    elif isinstance(r, RpcError):
                        report.calls_failed_typed += 1
                    elif isinstance(r, BaseException):
                        report.calls_lost += 1  # an untyped failure counts as lost
                    else:
                        report.calls_answered += 1
                if rng.random() < 0.05:  # abrupt: calls in flight must fail, typed
                    pending = [asyncio.ensure_future(_one_call(client, rng)) for _ in range(5)]
                    report.calls_made += len(pending)
                    protocol = client._protocol
                    if protocol is not None and protocol.transport is not None:
                        protocol.transport.abort()
                    for r in await asyncio.gather(*pending, return_exceptions=True):
                        if isinstance(r, CallTimeout) or (
                            isinstance(r, BaseException) and not isinstance(r, RpcError)
                        ):
                            report.calls_lost += 1
                        elif isinstance(r, RpcError):
                            report.calls_failed_typed += 1
                        else:
                            report.calls_answered += 1
                    break
        finally:
            await client.disconnect()
            events.cancel()
            report.disconnects += 1


async def _one_call(client: Any, rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.6:
        return await client.call("increment", rng.randrange(0, 5), timeout=10.0)
    if roll < 0.95:
        return await client.call("get", timeout=10.0)
    return await client.call("new_counter", timeout=10.0)


async def soak(
    connections: int, seconds: float, seed: int = 1, adapter: str = "asyncio"
) -> SoakReport:
    """Run a soak against a ``serve`` subprocess and return the report."""
    report = SoakReport(connections=connections, seconds=seconds)
    with tempfile.TemporaryDirectory() as tmp:
        cert = os.path.join(tmp, "cert.pem")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hardlight_conformance",
                "serve",
                "--app",
                "counter",
                "--port",
                "0",
                "--self-signed",
                "--write-cert",
                cert,
                "--adapter",
                adapter,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            if not line.startswith("listening on "):
                raise RuntimeError(f"serve did not start: {line!r}")
            port = int(line.rsplit(":", 1)[1])
            fingerprint = (
                await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            ).split()[-1]
            address = f"localhost:{port}"
            # warm up so the baseline includes imports, codecs and TLS state
            warm = time.monotonic() + min(3.0, seconds / 5)
            await asyncio.gather(
                *(
                    _client_loop(
                        i, address, fingerprint, warm, random.Random(seed + i), SoakReport()
                    )
                    for i in range(min(connections, 10))
                )
            )
            report.server_rss_start_kib = _rss_kib(proc.pid)
            deadline = time.monotonic() + seconds
            await asyncio.gather(
                *(
                    _client_loop(
                        i, address, fingerprint, deadline, random.Random(seed * 1000 + i), report
                    )
                    for i in range(connections)
                )
            )
            await asyncio.sleep(0.5)
            report.server_rss_end_kib = _rss_kib(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return report


def run(args: argparse.Namespace) -> int:
    """Print the report; exit 1 if anything was lost or memory grew."""
    report = asyncio.run(soak(args.connections, args.seconds, args.seed, args.adapter))
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}))
    else:
        for key, value in asdict(report).items():
            print(f"{key:22} {value}")
        print(f"{'result':22} {'ok' if report.ok else 'FAIL'}")
    return 0 if report.ok else 1
