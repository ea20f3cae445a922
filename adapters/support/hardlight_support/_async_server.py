"""The server-side application objects of the async adapters (asyncio, anyio, ASGI)."""

from __future__ import annotations

from typing import Any

from hardlight_core import EventEmitter, TopicCreated, TopicLike, TopicRemoved

from ._channels import ChannelReader

__all__ = ["AsyncEventEmitter", "AsyncTopicNotifier"]


class AsyncEventEmitter(EventEmitter):
    """Sends events of one type to topics, from application code (many may exist).

    ``await emit(topic, event)`` (the natural form on an event loop) or
    ``emit_nowait(topic, event)`` (from synchronous code on the loop); both queue at once
    and never block."""

    async def emit(self, topic: TopicLike, event: Any) -> int:
        """Queue ``event`` to every connection subscribed to ``topic``; returns how many."""
        return self.emit_nowait(topic, event)


class AsyncTopicNotifier(ChannelReader[TopicCreated | TopicRemoved]):
    """``TopicCreated`` / ``TopicRemoved`` as they happen (an async iterator; bounded);
    ``await recv()`` or ``await get(timeout)`` for one; ends when the server stops."""
