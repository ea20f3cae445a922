"""``python -m hardlight_conformance codec FILE...``: check rkyv vector files."""

from __future__ import annotations

import argparse
from typing import Any

from ._vectors import check_vector_files, default_vector_files

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``codec`` subcommand."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "codec",
        help="check the rkyv codec against vector files",
        description="Encode/decode every case of rkyv vector files (default: the packaged "
        "rkyv-public.json and rkyv-validation-public.json); prints failing cases and "
        "'N passed, M failed'.",
    )
    p.add_argument("files", nargs="*", help="vector JSON files")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the check; 0 when every case passed, 1 otherwise."""
    files = list(getattr(args, "files", None) or default_vector_files())
    passed, failed, lines = check_vector_files(files)
    for line in lines:
        print(line)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
