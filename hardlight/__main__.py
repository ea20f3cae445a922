"""``python -m hardlight <command>``: the package's command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from ._browser_proxy import start_browser_proxy
from ._schema import build_schema, load_target, resolve_service, schema_json, typescript
from ._serve import add_parser as add_serve_parser


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


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _browser_proxy(args: argparse.Namespace) -> int:
    front: ssl.SSLContext | None = None
    if args.cert:
        front = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        front.load_cert_chain(args.cert, args.key)
    upstream: ssl.SSLContext | None = None
    if args.upstream_tls:
        upstream = ssl.create_default_context()
        if args.insecure:
            upstream.check_hostname = False
            upstream.verify_mode = ssl.CERT_NONE

    async def run() -> None:
        host, port = args.listen
        up_host, up_port = args.upstream
        server = await start_browser_proxy(
            up_host, up_port, host=host, port=port, ssl_context=front, upstream_ssl=upstream
        )
        bound = server.sockets[0].getsockname()
        scheme = "wss" if front else "ws"
        where = f"{scheme}://{bound[0]}:{bound[1]}/"
        print(f"listening on {where} (hl.2) -> {up_host}:{up_port} (hl/2)", flush=True)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
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
    b = sub.add_parser(
        "browser-proxy",
        help="relay browsers (subprotocol hl.2) to a server that only accepts hl/2",
    )
    b.add_argument("--listen", type=_address, default=("127.0.0.1", 8766), help="HOST:PORT")
    b.add_argument("--upstream", type=_address, required=True, help="the server's HOST:PORT")
    b.add_argument("--upstream-tls", action="store_true", help="the server speaks TLS")
    b.add_argument("--insecure", action="store_true", help="do not verify the server's cert")
    b.add_argument("--cert", help="serve browsers over TLS with this PEM chain (with --key)")
    b.add_argument("--key", help="the PEM key for --cert")
    b.set_defaults(run=_browser_proxy)
    add_serve_parser(sub)
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
