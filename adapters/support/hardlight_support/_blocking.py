"""Reading a core :class:`~hardlight_core.Channel` from blocking code (threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from hardlight_core import Channel

from ._channels import ReaderBase

__all__ = ["BlockingChannelReader"]

T = TypeVar("T")


class BlockingChannelReader(ReaderBase[T]):
    """A blocking iterator over a bounded channel the core fills (``get(timeout)`` for one
    item); ends when the channel is closed. ``lock`` is the lock the filling thread holds.
    ``with``/``close()`` (or dropping it) stops it."""

    def __init__(
        self,
        channel: Channel[T],
        lock: threading.RLock | None = None,
        on_close: Callable[[Channel[T]], Any] | None = None,
    ) -> None:
        self._ready = threading.Condition(lock or threading.RLock())
        super().__init__(channel, on_close)

    def _wake(self) -> None:
        with self._ready:
            self._ready.notify_all()

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
