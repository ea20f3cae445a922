"""``python -m hardlight serve package.module:Handler``: run a handler as a server.

TLS from ``--cert``/``--key`` or ``--self-signed`` (its fingerprint printed, and the
certificate written with ``--write-cert`` for clients to pin); plain TCP only with
``--plaintext`` (behind a TLS-terminating proxy). Prints ``listening on HOST:PORT`` once
bound, then serves until SIGTERM or SIGINT, which stop it gracefully: running calls get
``--grace`` seconds, then connections close with 1001, and the process exits 0.

``--workers N`` (N > 1) runs N worker processes accepting on the one port (``SO_REUSEPORT``)
under a supervisor (this process), their events shared through the supervisor's hub
(``hardlight_support.workers``, ``hardlight_asyncio.WorkerHub``/``WorkerBus``).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import importlib
import inspect
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hardlight_core import Handler, Service, ServiceSpec
from hardlight_support import ServerConfig, ServerTLS

__all__ = ["ServeError", "add_parser", "load_handler", "run"]

ADAPTERS = ("asyncio", "anyio", "trio", "threads")
DESCRIPTION = (
    "Serve a Handler class over TLS (--cert/--key, or --self-signed: its fingerprint is "
    "printed, and --write-cert writes the certificate for clients to pin); plain TCP only "
    "with --plaintext, behind a TLS-terminating proxy. Prints 'listening on HOST:PORT' once "
    "bound and serves until SIGTERM or SIGINT, which stop it gracefully: running calls get "
    "--grace seconds, connections close with 1001, and the process exits 0."
)
DEFAULT_PORT = 8443


class ServeError(Exception):
    """A problem with what was asked (printed as ``hardlight serve: ...``)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def add_parser(subparsers: Any) -> None:
    """Register the ``serve`` subcommand."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run a Handler class as a HardLight server until SIGTERM/SIGINT",
        description=DESCRIPTION,
    )
    p.add_argument("target", help="package.module:Handler (a subclass of a Service and Handler)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    p.add_argument("--adapter", choices=ADAPTERS, default="asyncio", help="default asyncio")
    tls = p.add_mutually_exclusive_group(required=True)
    tls.add_argument("--cert", metavar="FILE", help="PEM certificate chain (with --key)")
    tls.add_argument(
        "--self-signed", action="store_true", help="make a certificate; prints its fingerprint"
    )
    tls.add_argument(
        "--plaintext",
        action="store_true",
        help="plain TCP, no TLS: only behind a TLS-terminating proxy",
    )
    p.add_argument("--key", metavar="FILE", help="PEM private key (with --cert)")
    p.add_argument(
        "--write-cert", metavar="FILE", help="write the certificate (PEM) here, for clients"
    )
    p.add_argument(
        "--level",
        "--log-level",
        dest="level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level of the 'hardlight' logger (DEBUG: connections and calls; default INFO)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=None,
        help="seconds running calls get to finish when stopping (default 5)",
    )
    p.add_argument("--max-connections", type=int, default=None, help="default 10000")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes accepting on the port (SO_REUSEPORT), events shared between them "
        "(default 1; not with --adapter trio)",
    )
    p.add_argument(
        "--authenticate",
        metavar="MODULE:FUNCTION",
        help="call FUNCTION(info) on every upgrade (info.header('authorization'), info.path, "
        "...): raise hardlight.Refuse(reason, status) to refuse; what it returns is the "
        "handler's self.auth",
    )
    p.add_argument(
        "--allowed-origin",
        action="append",
        metavar="ORIGIN",
        help="accept browsers only from this origin (repeat for more)",
    )
    p.set_defaults(run=run)


def load_handler(spec: str) -> type[Any]:
    """Import ``package.module:Handler`` and check it is a servable Handler class."""
    obj = _load_object(spec, "Handler")
    if not inspect.isclass(obj) or not issubclass(obj, Handler):
        what = f"the class {obj.__name__}" if inspect.isclass(obj) else type(obj).__name__
        hint = ""
        if inspect.isclass(obj) and issubclass(obj, Service):
            hint = "; it is a Service: serve its handler, class MyHandler(Service, Handler)"
        raise ServeError(f"{spec} is not a Handler subclass (it is {what}){hint}")
    if not issubclass(obj, Service):
        raise ServeError(f"{spec} implements no Service: subclass a Service and Handler")
    try:
        ServiceSpec.of(obj)
    except Exception as exc:
        raise ServeError(f"{spec}: {exc}") from exc
    return obj


def load_callable(spec: str) -> Any:
    """Import ``package.module:function`` (the ``--authenticate`` hook) and check it can
    be called."""
    obj = _load_object(spec, "function")
    if not callable(obj):
        raise ServeError(f"{spec} is not callable (it is {type(obj).__name__})")
    return obj


def _load_object(spec: str, kind: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ServeError(f"expected package.module:{kind}, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            module_name == exc.name or module_name.startswith(exc.name + ".")
        ):
            raise ServeError(
                f"no module named {exc.name!r} (looked in the current directory and on PYTHONPATH)"
            ) from exc
        raise ServeError(f"importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise ServeError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ServeError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _tls(args: argparse.Namespace) -> ServerTLS | None:
    if args.plaintext:
        if args.write_cert:
            raise ServeError("--write-cert needs TLS (--cert/--key or --self-signed)")
        return None
    if args.self_signed:
        if args.key:
            raise ServeError("--key goes with --cert, not --self-signed")
        names = list(dict.fromkeys(["localhost", "127.0.0.1", args.host]))
        return ServerTLS.self_signed(*names)
    if not args.key:
        raise ServeError("--cert needs --key (the certificate's private key, PEM)")
    for flag, path in (("--cert", args.cert), ("--key", args.key)):
        if not os.path.isfile(path):
            raise ServeError(f"{flag} {path}: no such file")
    try:
        tls = ServerTLS.from_files(args.cert, args.key)
        tls.ssl_context()  # a key that does not match or a file that is not PEM: say it now
    except (OSError, ValueError) as exc:
        raise ServeError(f"cannot use --cert {args.cert} --key {args.key}: {exc}") from exc
    return tls


def _config(args: argparse.Namespace) -> ServerConfig:
    tls = _tls(args)
    options: dict[str, Any] = {}
    if args.grace is not None:
        options["shutdown_grace"] = args.grace
    if args.max_connections is not None:
        options["max_connections"] = args.max_connections
    if args.allowed_origin:
        options["allowed_origins"] = frozenset(args.allowed_origin)
    if args.authenticate:
        options["authenticate"] = load_callable(args.authenticate)
    if not 0 <= args.port < 65536:
        raise ServeError(f"--port {args.port}: not a port")
    return ServerConfig(host=args.host, port=args.port, tls=tls, plaintext=tls is None, **options)


def _announce(server: Any, config: ServerConfig, args: argparse.Namespace) -> None:
    host, port = server.address
    print(f"listening on {host}:{port}", flush=True)
    if config.tls is not None:
        print(f"fingerprint {config.tls.fingerprint}", flush=True)
        if args.write_cert:
            print(f"certificate written to {args.write_cert}", flush=True)
    else:
        print("plaintext: no TLS (only behind a TLS-terminating proxy)", flush=True)


def _listen_error(exc: OSError, args: argparse.Namespace) -> ServeError:
    if exc.errno == errno.EADDRINUSE:
        why = "the address is already in use"
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "no such local address"
    else:
        why = exc.strerror or str(exc)
    return ServeError(f"cannot listen on {args.host}:{args.port}: {why}", status=1)


def _serve(
    args: argparse.Namespace,
    config: ServerConfig,
    handler: type[Any],
    bus: Any = None,
    ready: Any = None,
) -> None:
    """Serve in this process until SIGTERM/SIGINT; ``ready(server)`` once it listens."""
    adapter = args.adapter
    if ready is None:
        ready = functools.partial(_announce, config=config, args=args)
    if adapter == "threads":
        import hardlight_threads

        server = hardlight_threads.Server(config, handler, bus=bus)
        try:
            server.start()
        except OSError as exc:
            raise _listen_error(exc, args) from exc
        ready(server)
        server.run()
        return
    if adapter == "asyncio":
        import asyncio

        import hardlight_asyncio

        async def main_asyncio() -> None:
            server = hardlight_asyncio.Server(config, handler, bus=bus)
            try:
                await server.start()
            except OSError as exc:
                raise _listen_error(exc, args) from exc
            ready(server)
            await server.run()

        asyncio.run(main_asyncio())
        return
    import anyio

    import hardlight_anyio

    async def main_anyio() -> None:
        server = hardlight_anyio.Server(config, handler, bus=bus)
        try:
            await server.__aenter__()
        except OSError as exc:
            raise _listen_error(exc, args) from exc
        try:
            ready(server)
            await server.run()
        finally:
            await server.__aexit__(None, None, None)

    anyio.run(main_anyio, backend="trio" if adapter == "trio" else "asyncio")


def _serve_worker(args: argparse.Namespace, config: ServerConfig, index: int) -> None:
    """One worker process of ``--workers N``: the adapter's server on the worker bus."""
    from hardlight_asyncio import WorkerBus
    from hardlight_support.workers import notify_ready

    def ready(server: Any) -> None:
        notify_ready()

    try:
        _serve(args, config, load_handler(args.target), WorkerBus(), ready)
    except ServeError as exc:
        print(f"hardlight serve (worker {index}): {exc}", file=sys.stderr)
        raise SystemExit(exc.status) from None


def _serve_workers(args: argparse.Namespace, config: ServerConfig) -> int:
    """``--workers N``: the supervisor. Returns the exit status."""
    from hardlight_asyncio import WorkerHub
    from hardlight_support.workers import reserve_port, run_workers

    if args.adapter == "trio":
        raise ServeError(
            "--workers shares events on an asyncio bus: use --adapter asyncio, anyio or threads"
        )
    try:
        held = reserve_port(config.host, config.port)
    except ValueError as exc:  # no SO_REUSEPORT
        raise ServeError(str(exc)) from exc
    except OSError as exc:
        raise _listen_error(exc, args) from exc
    with held:
        config = dataclasses.replace(config, port=held.getsockname()[1], reuse_port=True)

        def ready(pids: list[int]) -> None:
            _announce(_Bound((config.host, config.port)), config, args)
            print(f"workers {len(pids)}: pids {' '.join(map(str, pids))}", flush=True)

        return run_workers(
            args.workers,
            functools.partial(_serve_worker, args, config),
            hub=WorkerHub.running,
            on_ready=ready,
            stop_timeout=config.shutdown_grace + 10.0,
        )


class _Bound:
    """What ``_announce`` reads of a server: its address."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status."""
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hardlight").setLevel(args.level)
    sys.path.insert(0, str(Path.cwd()))
    try:
        handler = load_handler(args.target)
        config = _config(args)
        if args.write_cert and config.tls is not None:
            try:
                Path(args.write_cert).write_bytes(config.tls.cert_pem)
            except OSError as exc:
                raise ServeError(f"--write-cert {args.write_cert}: {exc}") from exc
        if args.workers < 1:
            raise ServeError(f"--workers {args.workers}: at least 1")
        if args.workers > 1:
            status = _serve_workers(args, config)
            print("stopped" if status == 0 else "stopped (a worker failed)", flush=True)
            return status
        _serve(args, config, handler)
    except ServeError as exc:
        print(f"hardlight serve: {exc}", file=sys.stderr)
        return exc.status
    print("stopped", flush=True)
    return 0
