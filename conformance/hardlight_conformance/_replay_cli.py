"""``replay [DIR]``: the recorded reference sessions through our cores."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._data import traffic_dir
from ._replay import DIVERGENCES, replay_dir

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Register the ``replay`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "replay", help="replay the sessions recorded from the Rust reference through our cores"
    )
    p.add_argument("dir", nargs="?", help="folder of NAME.jsonl + NAME.decoded.json")
    p.add_argument("--no-byte-by-byte", action="store_true", help="only the real chunk boundaries")
    p.add_argument("-v", "--verbose", action="store_true", help="a line for passing sessions too")


def run(args: argparse.Namespace) -> int:
    """Print a line per failing session and ``N passed, M failed``."""
    directory = Path(args.dir) if args.dir else traffic_dir()
    results = replay_dir(directory, byte_by_byte=not args.no_byte_by_byte)
    applied: set[str] = set()
    for r in results:
        applied |= r.divergences
        if not r.ok:
            print(f"FAIL {r.name}: " + "; ".join(r.failures))
        elif args.verbose:
            print(f"ok   {r.name} ({r.checked} messages checked)")
    for name in sorted(applied):
        print(f"divergence {name}: {DIVERGENCES[name]}")
    passed = sum(r.ok for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1
