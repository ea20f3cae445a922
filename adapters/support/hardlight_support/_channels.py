"""Reading a core :class:`~hardlight_core.Channel` from async code (asyncio or trio)."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import anyio

from hardlight_core import Channel

__all__ = ["ChannelReader", "ReaderBase"]

T = TypeVar("T")


class ReaderBase(Generic[T]):
    """What every reader of a core channel shares: the channel wakes it through a weak
    reference (so a reader nobody holds any more is freed), and a reader closed, or
    dropped, is taken off the channel's producer (``on_close``): a subscription that an
    ``async for`` left behind stops receiving, and does not hold on to events."""

    def __init__(
        self, channel: Channel[T], on_close: Callable[[Channel[T]], Any] | None = None
    ) -> None:
        self._channel = channel
        self._on_close = on_close
        wake = weakref.WeakMethod(self._wake)

        def on_put() -> None:
            method = wake()
            if method is not None:
                method()

        channel.on_put = on_put

    def _wake(self) -> None:
        raise NotImplementedError

    @property
    def dropped(self) -> int:
        """Items refused because the queue was full."""
        return self._channel.dropped

    def close(self) -> None:
        """Stop receiving (what is queued is dropped); iteration ends."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self._channel)
        else:
            self._channel.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self._on_close is not None:
            # not contextlib.suppress: at interpreter exit module globals may be gone
            try:  # noqa: SIM105
                self.close()
            except Exception:
                pass


class ChannelReader(ReaderBase[T]):
    """An async iterator over a bounded channel the core fills; ends when it is closed.

    Works under asyncio and trio (anyio's Event, made at the first wait, so a reader
    may be created before the event loop runs). ``with``/``close()`` (or dropping it)
    stops it.
    """

    def __init__(
        self, channel: Channel[T], on_close: Callable[[Channel[T]], Any] | None = None
    ) -> None:
        self._ready: anyio.Event | None = None
        super().__init__(channel, on_close)

    def _wake(self) -> None:
        if self._ready is not None:
            self._ready.set()

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
