"""``python -m hardlight <command>``: the package's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._schema import build_schema, load_target, resolve_service, schema_json, typescript


def _schema(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path.cwd()))
    try:
        target = resolve_service(load_target(args.target))
        event = load_target(args.event) if args.event else None
        event_name = args.event.rpartition(":")[2].rpartition(".")[2] if args.event else None
        schema = build_schema(target, event, event_name)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        print(f"hardlight schema: {exc}", file=sys.stderr)
        return 2
    text = schema_json(schema)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.dts:
        Path(args.dts).write_text(typescript(schema), encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m hardlight")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "schema",
        help="describe a service as JSON (methods, state, events, types) for other clients",
    )
    p.add_argument("target", help="package.module:Service (or a Handler class implementing it)")
    p.add_argument("-o", "--output", help="write the JSON here (default: standard output)")
    p.add_argument("--dts", help="also write TypeScript declarations for it here")
    p.add_argument(
        "--event",
        help="package.module:EventType (default: the handler's Event, when one is found)",
    )
    p.set_defaults(run=_schema)
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
