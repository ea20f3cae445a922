"""``python -m hardlight_conformance oracle``: differential check against the real rkyv."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ._oracle import BuildError, default_cache_dir, find_toolchain, run_oracle

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``oracle`` subcommand."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "oracle",
        help="compare the codec with the real rkyv 0.7 on random types (needs cargo)",
        description="Generate random nested types and values, build one Rust program with "
        "rkyv 0.7 (cargo, offline, crates from Debian's librust-rkyv-dev), and compare "
        "encodings, decodings and accept/reject of damaged archives. Prints failing cases "
        "(with a shrunk type) and 'N passed, M failed'.",
    )
    p.add_argument("--types", type=int, default=300, help="random types per seed (300)")
    p.add_argument("--seed", type=int, action="append",
                   help="random seed (repeat for several; default 0)")
    p.add_argument("--mutations", type=int, default=8,
                   help="damaged copies of each archive checked (8)")
    p.add_argument("--cache", type=Path, default=None,
                   help=f"build cache directory (default {default_cache_dir()})")
    p.add_argument("--registry", default=None,
                   help="directory of crate sources (default /usr/share/cargo/registry)")
    p.add_argument("--no-shrink", action="store_true", help="report failures unshrunk")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the oracle; 0 when every type passed, 1 on failures, 2 without a toolchain."""
    tc = find_toolchain(args.registry)
    if isinstance(tc, str):
        print(f"oracle unavailable: {tc}", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    passed = failed = ub = zst = 0
    for seed in args.seed or [0]:
        t0 = time.monotonic()
        try:
            res = run_oracle(args.types, seed, args.mutations, args.cache, tc,
                             shrink=not args.no_shrink, log=log)
        except BuildError as e:
            print(f"seed {seed}: the generated program did not build:\n{e}")
            return 1
        for line in res.lines:
            print(line)
        log(f"seed {seed}: {res.passed} passed, {res.failed} failed "
            f"({time.monotonic() - t0:.1f} s)")
        passed += res.passed
        failed += res.failed
        ub += res.ub_skips
        zst += res.zst_skips
    if ub:
        print(f"{ub} damaged archives where rkyv read an inline string length above 7 past "
              "the string (rkyv accepts, we reject; not counted as failures)")
    if zst:
        print(f"{zst} damaged archives not sent to rkyv: we reject a vector or map of more "
              "than 2**20 zero-sized elements (rkyv has no cap)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
