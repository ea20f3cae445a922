"""``check URL --app APP``: run the recorded-reference scenarios against a live server."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ._live import ADAPTERS, WAIT, Context, client_tls, run_scenarios, summary

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Register the ``check`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "check", help="run the reference scenarios against a live server of any port"
    )
    p.add_argument("url", help="wss://host:port of the server under test")
    p.add_argument("--app", required=True, choices=["counter", "pet", "todo", "chat"])
    trust = p.add_mutually_exclusive_group(required=True)
    trust.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    trust.add_argument("--ca", metavar="FILE", help="trust this CA (or self-signed) certificate")
    trust.add_argument("--fingerprint", help="pin the server certificate's SHA-256")
    p.add_argument("--compress", type=int, default=6, choices=range(10), metavar="N")
    p.add_argument("--adapter", choices=ADAPTERS, default="asyncio")
    p.add_argument(
        "--expect-own-joined",
        action="store_true",
        help="chat: require a client's own Joined event (ours sends it; the reference may lose "
        "it, which is otherwise reported as a DIVERGENCE line and not as a failure)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=WAIT,
        metavar="SECONDS",
        help=f"bound of every single wait: connect, call, event, state (default {WAIT:g})",
    )


def run(args: argparse.Namespace) -> int:
    """Run the scenarios; prints a line each and ``N passed, M failed``.

    A documented reference behaviour that differs from ours (a lost own event right after a
    subscribe) prints a ``DIVERGENCE`` line, is counted after the summary (``, D divergences``)
    and does not fail the run.
    """
    if not args.wait > 0:
        raise SystemExit("--wait must be a positive number of seconds")
    ctx = Context(
        address=args.url,
        tls=client_tls(args.insecure, args.ca, args.fingerprint),
        adapter=args.adapter,
        compression_level=args.compress,
        expect_own_joined=args.expect_own_joined,
        wait=args.wait,
    )
    outcome = asyncio.run(run_scenarios(ctx, args.app, lambda line: print(line, flush=True)))
    print(summary(outcome), flush=True)
    return 1 if outcome.failed else 0
