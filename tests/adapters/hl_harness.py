"""Start any adapter's server in the background, and a tiny probe service for the tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import anyio

from hardlight_core import u32
from hardlight_core._service import Handler, Service
from hardlight_support import ServerConfig

ADAPTERS = ("asyncio", "anyio", "threads")
#: the server adapters with anyio on both of its backends
SERVER_RUNTIMES = ("asyncio", "anyio", "anyio-trio", "threads")


class Probe(Service):
    """A service whose methods misbehave on request."""

    async def echo(self, x: u32) -> u32: ...

    async def boom(self) -> None: ...

    async def wait(self, ms: u32) -> u32: ...


class ProbeHandler(Probe, Handler):
    """Handlers for :class:`Probe`; ``wait`` sleeps with anyio (any backend)."""

    async def echo(self, x: u32) -> u32:
        return x

    async def boom(self) -> None:
        raise ValueError("the handler broke")

    async def wait(self, ms: u32) -> u32:
        await anyio.sleep(ms / 1000)
        return ms


class RunningServer:
    """A server of one adapter running in the background of the test."""

    def __init__(self, adapter: str, config: ServerConfig, handler: type[Any]) -> None:
        self.adapter = adapter
        self.config = config
        if adapter == "asyncio":
            import hardlight_asyncio

            self.loop = asyncio.new_event_loop()
            self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
            self.thread.start()
            self.server: Any = hardlight_asyncio.Server(config, handler)
            asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        elif adapter in ("anyio", "anyio-trio"):
            from anyio.from_thread import start_blocking_portal

            import hardlight_anyio

            backend = "trio" if adapter == "anyio-trio" else "asyncio"
            self._portal_cm = start_blocking_portal(backend)
            self.portal = self._portal_cm.__enter__()
            self.server = hardlight_anyio.Server(config, handler)
            self._server_cm = self.portal.wrap_async_context_manager(self.server)
            self._server_cm.__enter__()
        else:
            import hardlight_threads

            self.server = hardlight_threads.Server(config, handler)
            self.server.start()
        self.port: int = self.server.port

    @property
    def connection_count(self) -> int:
        return int(self.server.connection_count)

    @property
    def topics(self) -> int:
        return len(self.server.core.switch.topics)

    def stop(self, grace: float = 1.0) -> None:
        if self.adapter == "asyncio":
            asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result(20)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        elif self.adapter in ("anyio", "anyio-trio"):
            self.portal.call(self.server.stop, grace)
            with contextlib.suppress(Exception):
                self._server_cm.__exit__(None, None, None)
            self._portal_cm.__exit__(None, None, None)
        else:
            self.server.stop(grace)


@contextlib.contextmanager
def running(adapter: str, config: ServerConfig, handler: type[Any]) -> Iterator[RunningServer]:
    """A server for the duration of a ``with`` block."""
    server = RunningServer(adapter, config, handler)
    stopped = False
    try:
        yield server
    finally:
        if not stopped:
            server.stop()


def pinned_config(server: RunningServer, wait: float = 10.0, **options: Any) -> Any:
    """A client config trusting exactly this server's certificate, with bounded waits."""
    from hardlight_support import ClientConfig

    fingerprint = server.config.fingerprint
    assert fingerprint is not None
    return ClientConfig.pinned(
        f"localhost:{server.port}", fingerprint, call_timeout=wait, connect_timeout=wait, **options
    )


def run_bounded(coro: Any, seconds: float = 30.0) -> Any:
    """``asyncio.run(coro)``, failing after ``seconds`` instead of hanging a test."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, seconds)

    return asyncio.run(bounded())
