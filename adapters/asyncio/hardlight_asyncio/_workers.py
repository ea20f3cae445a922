"""Events between the worker processes of one server: the hub and each worker's bus.

``WorkerHub`` runs in the supervisor (``hardlight_support.workers.run_workers``) on a Unix
domain socket; ``WorkerBus`` is a worker's ``EventBus``, a client of the hub, used as
``Server(config, Handler, bus=WorkerBus())`` exactly like ``NatsBus``. The frame format and
the routing rules are ``hardlight_support._hub`` (sans-IO); these two only move bytes.

Bounds: the hub drops an event for a worker whose socket has more than ``max_buffer``
bytes unwritten (that worker is not reading; counted in ``dropped``, logged), and a worker
drops what it would publish while its own unwritten bytes exceed ``max_buffer`` or while
the hub is unreachable (counted, logged once per outage). Local delivery never waits for
the hub: a worker delivers its own events to its own connections at once, and keeps doing
so when the hub is gone, reconnecting with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

from hardlight_core import ServerCore, Topic, TopicCreated, TopicRemoved
from hardlight_support import BusUnavailable
from hardlight_support._hub import (
    MAX_HUB_FRAME,
    FrameDecoder,
    HubEvent,
    HubProtocolError,
    HubRouter,
    encode_event,
    encode_hello,
    encode_interest,
)
from hardlight_support.workers import current_worker

__all__ = ["WorkerBus", "WorkerHub"]

log = logging.getLogger("hardlight")

#: unwritten bytes past which events are dropped for a peer that does not read
MAX_BUFFER = 16 * 1024 * 1024


class _HubPeer(asyncio.Protocol):
    """One worker connected to the hub."""

    def __init__(self, hub: WorkerHub) -> None:
        self.hub = hub
        self.decoder = FrameDecoder(hub.max_frame)
        self.transport: asyncio.Transport | None = None
        self.overflowing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.hub.router.add(self)

    def data_received(self, data: bytes) -> None:
        hub = self.hub
        try:
            for frame in self.decoder.feed(data):
                targets = hub.router.receive(self, frame)
                if targets and isinstance(frame, HubEvent):
                    hub.forward(frame.raw, targets)
        except HubProtocolError as exc:
            log.warning("worker hub: closing a client that broke the protocol: %s", exc)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.router.remove(self)
        self.transport = None


class WorkerHub:
    """The supervisor's hub: forwards each worker's events to the workers interested."""

    def __init__(
        self, path: str, *, max_buffer: int = MAX_BUFFER, max_frame: int = MAX_HUB_FRAME
    ) -> None:
        self.path = path
        self.max_buffer = max_buffer
        self.max_frame = max_frame
        self.router: HubRouter[_HubPeer] = HubRouter()
        self.forwarded = 0
        self.dropped = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen on the Unix socket ``path`` (only this user may connect: mode 0600)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _HubPeer(self), self.path)
        os.chmod(self.path, 0o600)

    def forward(self, raw: bytes, targets: list[_HubPeer]) -> None:
        for peer in targets:
            transport = peer.transport
            if transport is None:
                continue
            if transport.get_write_buffer_size() > self.max_buffer:
                self.dropped += 1
                if not peer.overflowing:
                    peer.overflowing = True
                    log.warning("worker hub: a worker is not reading; its events are dropped")
                continue
            peer.overflowing = False
            transport.write(raw)
            self.forwarded += 1

    async def close(self) -> None:
        """Stop listening and close every worker's connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for peer in list(self.router.peers):
            if peer.transport is not None:
                peer.transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    @classmethod
    @contextlib.contextmanager
    def running(cls, path: str, **options: Any) -> Iterator[WorkerHub]:
        """Run a hub on its own thread and event loop while the block runs (the supervisor)."""
        hub = cls(path, **options)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="hardlight-hub", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(hub.start(), loop).result(10)
            yield hub
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(hub.close(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()


class _BusConnection(asyncio.Protocol):
    def __init__(self, bus: WorkerBus) -> None:
        self.bus = bus
        self.decoder = FrameDecoder(bus.max_frame)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except HubProtocolError as exc:
            log.warning("worker bus: the hub sent a bad frame (%s); reconnecting", exc)
            if self.transport is not None:
                self.transport.abort()
            return
        for frame in frames:
            if isinstance(frame, HubEvent):
                self.bus._receive(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.bus._lost(self)


class WorkerBus:
    """A worker's ``EventBus``: events to and from the other workers through the hub."""

    def __init__(
        self,
        path: str | None = None,
        *,
        max_buffer: int = MAX_BUFFER,
        max_frame: int = MAX_HUB_FRAME,
        connect_timeout: float = 2.0,
        reconnect_wait: float = 0.1,
        max_reconnect_wait: float = 2.0,
    ) -> None:
        if path is None:
            info = current_worker()
            if info is None or info.hub is None:
                raise BusUnavailable(
                    "WorkerBus() outside a worker of run_workers: give the hub's path"
                )
            path = info.hub
        self.path = path
        self.max_buffer = max_buffer
        self.max_frame = max_frame
        self.connect_timeout = connect_timeout
        self.reconnect_wait = reconnect_wait
        self.max_reconnect_wait = max_reconnect_wait
        self.origin = os.urandom(8)
        self.node_id = self.origin.hex()
        self.published = 0
        self.received = 0
        self.dropped = 0
        self._core: ServerCore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._lock: Any = None
        self._after_deliver: Callable[[], None] | None = None
        self._conn: _BusConnection | None = None
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._outage_logged = False

    async def start(
        self,
        core: ServerCore,
        *,
        lock: Any = None,
        after_deliver: Callable[[], None] | None = None,
    ) -> None:
        """Connect to the hub (BusUnavailable if it cannot be reached) and hook into the core.

        Runs on an asyncio loop; the threads server lends its handler loop and passes the
        ``lock`` that guards its core, as with ``NatsBus``.
        """
        self._core = core
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._lock = lock
        self._after_deliver = after_deliver
        self._closing = False
        try:
            await self._connect()
        except OSError as exc:
            raise BusUnavailable(f"cannot reach the worker hub at {self.path}: {exc}") from exc
        core.on_emit = self.publish

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _transport, conn = await asyncio.wait_for(
            loop.create_unix_connection(lambda: _BusConnection(self), self.path),
            self.connect_timeout,
        )
        assert conn.transport is not None
        if self._lock is not None:
            with self._lock:
                topics = self._core.switch.topics if self._core is not None else frozenset()
        else:
            topics = self._core.switch.topics if self._core is not None else frozenset()
        conn.transport.write(
            b"".join([encode_hello(self.origin), *(encode_interest(t, True) for t in topics)])
        )
        self._conn = conn

    # -- EventBus ----------------------------------------------------------------------------

    def topic_changed(self, change: TopicCreated | TopicRemoved) -> None:
        """Tell the hub this worker gained its first / lost its last subscriber of a topic."""
        self._send(encode_interest(change.topic, isinstance(change, TopicCreated)), False)

    def publish(self, topic: Topic, payload: bytes) -> None:
        """Send an event emitted on this worker to the others (already delivered here)."""
        self._send(encode_event(self.origin, topic, payload), True)

    def _send(self, frame: bytes, event: bool) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._thread:
            self._write(frame, event)
        else:  # the threads server's connection threads, or application threads
            with contextlib.suppress(RuntimeError):  # the loop is closed: we are stopping
                loop.call_soon_threadsafe(self._write, frame, event)

    def _write(self, frame: bytes, event: bool) -> None:
        conn = self._conn
        transport = conn.transport if conn is not None else None
        if transport is None:
            if event:
                self.dropped += 1
                if not self._outage_logged and not self._closing:
                    self._outage_logged = True
                    log.warning("worker hub unreachable: events stay on this worker meanwhile")
            return  # interest is sent again, in full, on reconnect
        if event:
            if transport.get_write_buffer_size() > self.max_buffer:
                self.dropped += 1
                if not self._outage_logged:
                    self._outage_logged = True
                    log.warning("worker hub not reading: events stay on this worker meanwhile")
                return
            self.published += 1
        transport.write(frame)

    # -- from the hub -------------------------------------------------------------------------

    def _receive(self, frame: HubEvent) -> None:
        core = self._core
        if core is None or frame.origin == self.origin:
            return  # our own event: delivered locally already
        self.received += 1
        if self._lock is not None:
            with self._lock:
                core.deliver(frame.topic, frame.payload)
        else:
            core.deliver(frame.topic, frame.payload)
        if self._after_deliver is not None:
            self._after_deliver()

    def _lost(self, conn: _BusConnection) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        if self._closing or self._loop is None:
            return
        log.warning("worker hub connection lost; local delivery continues, reconnecting")
        self._reconnecting = self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        wait = self.reconnect_wait
        while not self._closing:
            await asyncio.sleep(wait)
            try:
                await self._connect()
            except (OSError, TimeoutError) as exc:
                log.debug("worker hub reconnect failed: %s", exc)
                wait = min(wait * 2, self.max_reconnect_wait)
                continue
            self._outage_logged = False
            log.info("worker hub connection restored")
            return

    async def close(self) -> None:
        """Disconnect from the hub."""
        self._closing = True
        task, self._reconnecting = self._reconnecting, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()
