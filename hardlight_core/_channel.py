"""A bounded queue the core fills and an adapter drains (topic notifications, events).

The core never blocks and never grows without bound: a full channel drops the new
item and counts it. ``on_put`` lets an adapter wake whatever waits (an asyncio or
anyio event, a condition variable); the waiting itself is the adapter's.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Channel"]

log = logging.getLogger("hardlight")

T = TypeVar("T")


class Channel(Generic[T]):
    """FIFO of at most ``maxsize`` items; closed once :meth:`close` is called."""

    __slots__ = ("_items", "closed", "dropped", "maxsize", "name", "on_put")

    def __init__(self, maxsize: int, name: str = "channel") -> None:
        if maxsize < 1:
            raise ValueError(f"a channel holds at least one item, not {maxsize}")
        self.maxsize = maxsize
        self.name = name
        self.closed = False
        #: items refused because the channel was full
        self.dropped = 0
        #: called after every put and on close (wake the reader)
        self.on_put: Callable[[], None] = _nothing
        self._items: deque[T] = deque()

    def put(self, item: T) -> bool:
        """Append ``item``; False (dropped, counted, logged) when full or closed."""
        if self.closed:
            return False
        if len(self._items) >= self.maxsize:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("%s full (%d items): dropped %d so far", self.name, self.maxsize,
                            self.dropped)
            return False
        self._items.append(item)
        self.on_put()
        return True

    def get(self) -> T | None:
        """The oldest item, or None when empty."""
        return self._items.popleft() if self._items else None

    def close(self) -> None:
        """No more items: readers see the end after draining what is left."""
        self.closed = True
        self.on_put()

    @property
    def exhausted(self) -> bool:
        """Closed and drained: a reader is done."""
        return self.closed and not self._items

    def __len__(self) -> int:
        return len(self._items)


def _nothing() -> None:
    pass
