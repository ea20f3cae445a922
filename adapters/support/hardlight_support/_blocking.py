"""Reading a core :class:`~hardlight_core.Channel` from blocking code (threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Generic, TypeVar

from hardlight_core import Channel

__all__ = ["BlockingChannelReader"]

T = TypeVar("T")


class BlockingChannelReader(Generic[T]):
    """A blocking iterator over a bounded channel the core fills (``get(timeout)`` for one
    item); ends when the channel is closed. ``lock`` is the lock the filling thread holds."""

    def __init__(self, channel: Channel[T], lock: threading.RLock | None = None) -> None:
        self._channel = channel
        self._ready = threading.Condition(lock or threading.RLock())
        channel.on_put = self._wake

    def _wake(self) -> None:
        with self._ready:
            self._ready.notify_all()

    @property
    def dropped(self) -> int:
        """Items refused because the queue was full."""
        return self._channel.dropped

    def recv(self) -> T | None:
        """The next item, waiting as long as it takes; None once the channel is closed and
        drained (the blocking form of the async readers' ``await recv()``)."""
        return self.get(None)

    def get(self, timeout: float | None = None) -> T | None:
        """The next item; None on timeout or once the channel is closed and drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        channel = self._channel
        with self._ready:
            while True:
                item = channel.get()
                if item is not None or channel.closed:
                    return item
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return None
                self._ready.wait(wait)

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self.get()
            if item is None:
                return
            yield item
