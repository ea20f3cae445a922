"""Events across many servers on NATS: ``Server(config, Handler, bus=NatsBus(url))``.

Every node subscribes to a topic's subject while one of its connections is
subscribed to the topic, publishes the events emitted on it, and delivers events
from other nodes to its own subscribers (see ``hardlight_support._subjects``). The topic
notifier stays per node: ``TopicCreated`` / ``TopicRemoved`` say when *this*
server gains its first or loses its last subscriber of a topic.

An unreachable NATS at start raises :class:`BusUnavailable`; an outage while
running is logged, nats-py reconnects with backoff, and local delivery goes on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hardlight_core import ServerCore, Topic, TopicCreated, TopicRemoved
from hardlight_support import (
    ORIGIN_HEADER,
    BusUnavailable,
    new_node_id,
    subject_topic,
    topic_subject,
)

__all__ = ["BusUnavailable", "NatsBus"]

log = logging.getLogger("hardlight")

MAX_PENDING_PUBLISHES = 10_000


class NatsBus:
    """Connects a server's topics to NATS subjects (an ``EventBus``)."""

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        prefix: str = "hl",
        connect_timeout: float = 2.0,
        reconnect_wait: float = 0.5,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.reconnect_wait = reconnect_wait
        self.node_id = new_node_id()
        self._nc: Any = None
        self._core: ServerCore | None = None
        self._subscriptions: dict[Topic, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: Any = None
        self._after_deliver: Any = None
        self.published = 0
        self.received = 0
        self.dropped = 0

    async def start(
        self,
        core: ServerCore,
        *,
        lock: Any = None,
        after_deliver: Any = None,
    ) -> None:
        """Connect (BusUnavailable if NATS cannot be reached) and hook into the core.

        Runs on an asyncio loop (the threads server lends its handler loop, passing the
        ``lock`` that guards its core and an ``after_deliver`` callback that wakes the
        connections an event from another node was queued for).
        """
        import nats

        self._core = core
        self._loop = asyncio.get_running_loop()
        self._lock = lock
        self._after_deliver = after_deliver

        async def disconnected() -> None:
            log.warning("NATS connection lost; local delivery continues, reconnecting")

        async def reconnected() -> None:
            log.info("NATS connection restored")

        async def error(exc: Exception) -> None:
            log.warning("NATS error: %s", exc)

        try:
            self._nc = await nats.connect(
                self.url,
                connect_timeout=self.connect_timeout,
                # fail fast at start, with a clear error; outages later are retried
                reconnect_time_wait=0.1,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            )
        except Exception as exc:
            raise BusUnavailable(f"cannot reach NATS at {self.url}: {exc}") from exc
        # once up, ride out outages: reconnect with backoff for ever
        self._nc.options["allow_reconnect"] = True
        self._nc.options["max_reconnect_attempts"] = -1
        self._nc.options["reconnect_time_wait"] = self.reconnect_wait
        core.on_emit = self.publish
        for topic in core.switch.topics:
            self._spawn(self._subscribe(topic))

    def topic_changed(self, change: TopicCreated | TopicRemoved) -> None:
        """Follow this node's interest: subscribe on Created, unsubscribe on Removed."""
        if self._nc is None:
            return
        if isinstance(change, TopicCreated):
            self._spawn(self._subscribe(change.topic))
        else:
            self._spawn(self._unsubscribe(change.topic))

    async def _subscribe(self, topic: Topic) -> None:
        if topic in self._subscriptions or self._nc is None:
            return
        self._subscriptions[topic] = None  # reserve: a fast Removed cancels it below
        try:
            sub = await self._nc.subscribe(topic_subject(topic, self.prefix), cb=self._receive)
        except Exception as exc:
            log.warning("NATS subscribe for %s failed: %s", topic, exc)
            self._subscriptions.pop(topic, None)
            return
        if topic in self._subscriptions:
            self._subscriptions[topic] = sub
        else:
            await sub.unsubscribe()

    async def _unsubscribe(self, topic: Topic) -> None:
        sub = self._subscriptions.pop(topic, None)
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                log.debug("NATS unsubscribe failed: %s", exc)

    def publish(self, topic: Topic, payload: bytes) -> None:
        """Send an event emitted on this node to the other nodes (EventBus)."""
        if self._nc is None:
            return
        if len(self._tasks) >= MAX_PENDING_PUBLISHES:
            self.dropped += 1
            log.warning("NATS publish queue full; event for %s not sent to other nodes", topic)
            return
        self.published += 1
        self._spawn(
            self._nc.publish(
                topic_subject(topic, self.prefix), payload, headers={ORIGIN_HEADER: self.node_id}
            )
        )

    async def _receive(self, msg: Any) -> None:
        headers = msg.headers or {}
        if headers.get(ORIGIN_HEADER) == self.node_id or self._core is None:
            return  # our own event: already delivered locally
        try:
            topic = subject_topic(msg.subject, self.prefix)
        except ValueError:
            return
        self.received += 1
        if self._lock is not None:
            with self._lock:
                self._core.deliver(topic, bytes(msg.data))
        else:
            self._core.deliver(topic, bytes(msg.data))
        if self._after_deliver is not None:
            self._after_deliver()

    def _spawn(self, coro: Any) -> None:
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            self._create_task(coro)
        else:  # called from another thread (the threads server's connections)
            loop.call_soon_threadsafe(self._create_task, coro)

    def _create_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(coro: Any) -> None:
        try:
            await coro
        except Exception as exc:
            log.warning("NATS operation failed: %s", exc)

    async def close(self) -> None:
        """Drain and close the NATS connection."""
        for task in list(self._tasks):
            task.cancel()
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.drain(), 2.0)
            except Exception:
                await nc.close()
        self._subscriptions.clear()
