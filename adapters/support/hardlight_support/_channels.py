"""Reading a core :class:`~hardlight_core.Channel` from async code (asyncio or trio)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Generic, TypeVar

import anyio

from hardlight_core import Channel

__all__ = ["ChannelReader"]

T = TypeVar("T")


class ChannelReader(Generic[T]):
    """An async iterator over a bounded channel the core fills; ends when it is closed.

    Works under asyncio and trio (anyio's Event, made at the first wait, so a reader
    may be created before the event loop runs).
    """

    def __init__(self, channel: Channel[T]) -> None:
        self._channel = channel
        self._ready: anyio.Event | None = None
        channel.on_put = self._wake

    def _wake(self) -> None:
        if self._ready is not None:
            self._ready.set()

    @property
    def dropped(self) -> int:
        """Items refused because the queue was full."""
        return self._channel.dropped

    async def recv(self) -> T | None:
        """The next item, or None once the channel is closed and drained."""
        channel = self._channel
        while True:
            item = channel.get()
            if item is not None:
                return item
            if channel.closed:
                return None
            self._ready = anyio.Event()
            await self._ready.wait()

    async def get(self, timeout: float | None = None) -> T | None:
        """The next item; None on timeout or at the end."""
        with anyio.move_on_after(timeout):
            return await self.recv()
        return None

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        item = await self.recv()
        if item is None:
            raise StopAsyncIteration
        return item
