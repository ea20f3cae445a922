"""``serve --app APP``: run one of our servers for a client under test."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from typing import Any

from hardlight_apps import APPS, counter
from hardlight_core import TopicCreated, encode
from hardlight_support import ServerConfig, ServerTLS

from ._live import ADAPTERS

__all__ = ["add_parser", "handler_for", "run"]


def add_parser(subparsers: Any) -> None:
    """Register the ``serve`` sub-command."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve a recorded app for a client under test"
    )
    p.add_argument("--app", required=True, choices=sorted(APPS))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    tls = p.add_mutually_exclusive_group(required=True)
    tls.add_argument("--cert", metavar="FILE", help="PEM certificate chain (with --key)")
    tls.add_argument("--self-signed", action="store_true", help="generate a certificate")
    p.add_argument("--key", metavar="FILE", help="PEM private key (with --cert)")
    p.add_argument(
        "--write-cert", metavar="FILE", help="write the (self-signed) certificate PEM here"
    )
    p.add_argument("--adapter", choices=ADAPTERS, default="asyncio")
    p.add_argument(
        "--uvloop", action="store_true", help="run on uvloop (pip install uvloop) if installed"
    )
    p.add_argument(
        "--bus", metavar="NATS_URL", help="share events with other servers through NATS"
    )
    p.add_argument(
        "--tls-transport",
        choices=("auto", "socket", "asyncio"),
        default="auto",
        help="asyncio adapter: TLS on SSLSockets (socket) or the loop's own TLS (asyncio)",
    )


def handler_for(app: str) -> type[Any]:
    """The handler class of an app (chat gets a fresh shared history per server)."""
    module = APPS[app]
    if app == "chat":
        from hardlight_apps.chat import ChatHandler, ChatRooms

        return type("ServedChatHandler", (ChatHandler,), {"rooms": ChatRooms()})
    name = {"counter": "CounterHandler", "pet": "PetHandler", "todo": "TodoHandler"}[app]
    handler: type[Any] = getattr(module, name)
    return handler


def _config(args: argparse.Namespace) -> ServerConfig:
    if args.self_signed:
        tls = ServerTLS.self_signed("localhost", args.host)
    else:
        if not args.key:
            raise SystemExit("--cert needs --key")
        tls = ServerTLS.from_files(args.cert, args.key)
    if args.write_cert:
        with open(args.write_cert, "wb") as f:
            f.write(tls.cert_pem)
    return ServerConfig(host=args.host, port=args.port, tls=tls)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    config = _config(args)
    handler = handler_for(args.app)
    if args.adapter == "threads":
        return _run_threads(args, config, handler)
    if args.uvloop:
        import uvloop

        uvloop.install()
    return asyncio.run(_run_async(args, config, handler))


def _announce(host: str, port: int, config: ServerConfig) -> None:
    print(f"listening on {host}:{port}", flush=True)
    print(f"fingerprint {config.fingerprint}", flush=True)


async def _run_async(args: argparse.Namespace, config: ServerConfig, handler: Any) -> int:
    if args.adapter == "anyio":
        import hardlight_anyio as adapter
    else:
        import hardlight_asyncio as adapter  # type: ignore[no-redef]
    if not hasattr(adapter, "Server"):
        raise SystemExit(f"the {args.adapter} adapter is not available in this build")
    options: dict[str, Any] = {}
    if args.bus:
        from hardlight_asyncio import NatsBus

        options["bus"] = NatsBus(args.bus)
    if args.adapter == "asyncio":
        options["tls_transport"] = args.tls_transport
    server = adapter.Server(config, handler, **options)
    tasks = []
    if args.app == "counter":
        emitter = server.event_emitter(counter.CounterEvent)
        notifier = server.topic_notifier()

        async def greet() -> None:
            async for change in notifier:
                if isinstance(change, TopicCreated):
                    await emitter.emit(change.topic, counter.ServerSentTest())

        tasks.append(greet)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.adapter == "anyio":
        async with server:  # anyio servers live in their task group
            running = [asyncio.create_task(t()) for t in tasks]
            _announce(*server.address, config)
            await stop.wait()
    else:
        await server.start()
        running = [asyncio.create_task(t()) for t in tasks]
        _announce(*server.address, config)
        await stop.wait()
        await server.stop()
    for task in running:
        task.cancel()
    print("stopped", flush=True)
    return 0


def _run_threads(args: argparse.Namespace, config: ServerConfig, handler: Any) -> int:
    import hardlight_threads

    if not hasattr(hardlight_threads, "Server"):
        raise SystemExit("the threads adapter is not available in this build")
    if args.bus:
        from hardlight_asyncio import NatsBus

        server = hardlight_threads.Server(config, handler, bus=NatsBus(args.bus))
    else:
        server = hardlight_threads.Server(config, handler)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threads = []
    if args.app == "counter":
        emitter = server.event_emitter(counter.CounterEvent)
        notifier = server.topic_notifier()
        payload_type = counter.CounterEvent
        encode(counter.ServerSentTest(), payload_type)  # fail early if the type is wrong

        def greet() -> None:
            while not stop.is_set():
                change = notifier.get(0.2)
                if isinstance(change, TopicCreated):
                    emitter.emit(change.topic, counter.ServerSentTest())

        threads.append(threading.Thread(target=greet, daemon=True))
    server.start()
    for t in threads:
        t.start()
    _announce(*server.address, config)
    while not stop.wait(0.2):
        pass
    server.stop()
    for t in threads:
        t.join(2)
    print("stopped", flush=True)
    sys.stdout.flush()
    return 0
