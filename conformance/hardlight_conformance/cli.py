"""Command line: one sub-command per module, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

# sub-command -> module implementing it (imported lazily so one broken command
# cannot take the others down)
COMMANDS = {
    "codec": "hardlight_conformance._codec_cli",
    "replay": "hardlight_conformance._replay_cli",
    "serve": "hardlight_conformance._serve_cli",
    "check": "hardlight_conformance._check_cli",
    "bench": "hardlight_conformance._bench_cli",
    "soak": "hardlight_conformance._soak_cli",
    "oracle": "hardlight_conformance._oracle_cli",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m hardlight_conformance",
        description="Check a HardLight implementation against the Rust reference's behaviour.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_parser(sub)
        modules[name] = module
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args))
