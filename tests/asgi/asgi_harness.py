"""Serve an ASGI app with a real ASGI server (uvicorn or hypercorn) on 127.0.0.1 in a thread.

TLS is terminated by the ASGI server, with a fresh self-signed certificate written to a
temporary directory. Every start, stop and cross-thread call is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from hardlight_support import ServerTLS

#: (ASGI server, event loop, uvicorn's WebSocket implementation)
SERVERS = {
    "uvicorn": ("uvicorn", "asyncio", "auto"),  # websockets' sans-I/O implementation
    "uvicorn-wsproto": ("uvicorn", "asyncio", "wsproto"),
    "hypercorn": ("hypercorn", "asyncio", ""),
    "hypercorn-trio": ("hypercorn", "trio", ""),
}
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


class Lifespan:
    """Wraps an ASGI app: notes the loop's token when the lifespan starts (so tests can run
    coroutines there from their thread) and runs ``background`` tasks until it ends."""

    def __init__(self, app: Any, background: list[Callable[[], Awaitable[None]]] | None = None):
        self.app = app
        self.background = background or []
        self.token: Any = None
        self.started = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        tasks = anyio.CancelScope()
        tasks_done = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def run_background(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                try:
                    with tasks:
                        async with anyio.create_task_group() as inner:
                            for task in self.background:
                                inner.start_soon(task)
                            task_status.started()
                finally:
                    tasks_done.set()

            async def forward_receive() -> Any:
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    # end the background tasks first: hypercorn cancels the lifespan task
                    # as soon as the shutdown is complete
                    tasks.cancel()
                    with anyio.fail_after(10):
                        await tasks_done.wait()
                return message

            async def forward_send(message: Any) -> None:
                if message["type"] == "lifespan.startup.complete":
                    self.token = anyio.lowlevel.current_token()
                    await tg.start(run_background)
                    self.started.set()
                await send(message)

            await self.app(scope, forward_receive, forward_send)
            tasks.cancel()


def write_tls(tmp: Path) -> tuple[ServerTLS, Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, as PEM files in ``tmp``."""
    tls = ServerTLS.self_signed("localhost", "127.0.0.1")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    cert.write_bytes(tls.cert_pem)
    key.write_bytes(tls.key_pem)
    key.chmod(0o600)
    return tls, cert, key


class AsgiServer:
    """One ASGI server in a thread, serving ``app`` (wrapped in :class:`Lifespan`)."""

    def __init__(
        self,
        app: Any,
        kind: str,
        tmp: Path,
        *,
        tls: bool = True,
        background: list[Callable[[], Awaitable[None]]] | None = None,
    ) -> None:
        self.kind = kind
        self.server_name, self.backend, self.ws = SERVERS[kind]
        self.app = Lifespan(app, background)
        self.tls: ServerTLS | None = None
        self.cert: Path | None = None
        self.key: Path | None = None
        if tls:
            self.tls, self.cert, self.key = write_tls(tmp)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self.error: BaseException | None = None
        self._stop: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"asgi-{kind}", daemon=True)

    @property
    def fingerprint(self) -> str:
        assert self.tls is not None
        return self.tls.fingerprint

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self.app.started.wait(START_TIMEOUT):
            raise RuntimeError(f"{self.kind} did not start within {START_TIMEOUT}s: {self.error}")

    def _run(self) -> None:
        try:
            if self.server_name == "uvicorn":
                self._run_uvicorn()
            elif self.backend == "trio":
                import trio

                trio.run(self._hypercorn_trio)
            else:
                asyncio.run(self._hypercorn_asyncio())
        except BaseException as exc:  # reported by start() / stop()
            self.error = exc

    def _run_uvicorn(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            lifespan="on",
            ws=self.ws,  # type: ignore[arg-type]
            log_level="warning",
            ssl_certfile=str(self.cert) if self.cert else None,
            ssl_keyfile=str(self.key) if self.key else None,
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)

        def stop() -> None:
            server.should_exit = True

        self._stop = stop
        asyncio.run(server.serve(sockets=[self.sock]))

    def _hypercorn_config(self) -> Any:
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"fd://{self.sock.fileno()}"]
        if self.cert and self.key:
            config.certfile, config.keyfile = str(self.cert), str(self.key)
        config.graceful_timeout = 5.0
        config.accesslog = None
        config.errorlog = None
        return config

    async def _hypercorn_asyncio(self) -> None:
        from hypercorn.asyncio import serve

        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._stop = lambda: loop.call_soon_threadsafe(stopping.set)
        await serve(self.app, self._hypercorn_config(), shutdown_trigger=stopping.wait)

    async def _hypercorn_trio(self) -> None:
        import trio
        from hypercorn.trio import serve

        stopping = trio.Event()
        token = trio.lowlevel.current_trio_token()
        self._stop = lambda: token.run_sync_soon(stopping.set)
        await serve(self.app, self._hypercorn_config(), shutdown_trigger=stopping.wait)

    def call(self, func: Callable[..., Awaitable[Any]], *args: Any, timeout: float = 30.0) -> Any:
        """Run ``await func(*args)`` on the server's loop (bounded) and return its result."""

        async def bounded() -> Any:
            with anyio.fail_after(timeout):
                return await func(*args)

        return anyio.from_thread.run(bounded, token=self.app.token)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
        self._thread.join(STOP_TIMEOUT)
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._thread.is_alive():
            raise RuntimeError(f"{self.kind} did not stop within {STOP_TIMEOUT}s")
        if self.error is not None and not isinstance(self.error, SystemExit):
            raise RuntimeError(f"{self.kind} failed: {self.error!r}") from self.error


@contextlib.contextmanager
def serving(
    app: Any,
    kind: str,
    tmp: Path,
    *,
    tls: bool = True,
    background: list[Callable[[], Awaitable[None]]] | None = None,
) -> Iterator[AsgiServer]:
    server = AsgiServer(app, kind, tmp, tls=tls, background=background)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def raw_upgrade(
    port: int, headers: dict[str, str], *, tls: bool = True, path: str = "/"
) -> tuple[int, dict[str, str], bytes]:
    """Send an upgrade request by hand; (status, lower-case headers, body start)."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        sock: socket.socket = raw
        if tls:
            sock = insecure_context().wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        found = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            found[name.strip().lower()] = value.strip()
        length = int(found.get("content-length", "0") or 0)
        with contextlib.suppress(OSError, TimeoutError):
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        return status, found, body


@contextlib.contextmanager
def browser_servers(apps: dict[str, Any], kind: str) -> Iterator[dict[str, str]]:
    """For tests/clients/test_js_client.py: each app (handler, tls, allowed_origins) as a
    HardLightApp under its own ``kind`` ASGI server; yields name -> ws:// or wss:// URL."""
    import tempfile

    from hardlight_asgi import HardLightApp

    with (
        tempfile.TemporaryDirectory(prefix="hl-asgi-browser-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        urls = {}
        for name, app in apps.items():
            folder = Path(tmp) / name
            folder.mkdir()
            asgi_app = HardLightApp(app.handler, allowed_origins=app.allowed_origins)
            server = stack.enter_context(serving(asgi_app, kind, folder, tls=app.tls))
            urls[name] = f"{'wss' if app.tls else 'ws'}://127.0.0.1:{server.port}/"
        yield urls
