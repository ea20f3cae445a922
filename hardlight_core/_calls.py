"""Call-id bookkeeping: 256 ids per connection, on both sides."""

from __future__ import annotations

import heapq

from ._errors import TooManyCallsInFlight

__all__ = ["MAX_CALLS_IN_FLIGHT", "ClientCallTable", "ServerInFlightTable"]

MAX_CALLS_IN_FLIGHT = 256


class ClientCallTable:
    """The client's ids: the lowest free one is taken; freed by the answer.

    A call given up by its caller (timeout) keeps its id until the late answer
    arrives, so an id is never reused while the server may still answer it.
    """

    __slots__ = ("_abandoned", "_free", "_pending")

    def __init__(self) -> None:
        self._pending: set[int] = set()
        self._abandoned: set[int] = set()
        self._free = list(range(MAX_CALLS_IN_FLIGHT))  # a min-heap, sorted to start with

    def allocate(self) -> int:
        """Reserve the lowest free id; TooManyCallsInFlight when all 256 are in use."""
        if not self._free:
            raise TooManyCallsInFlight(f"all {MAX_CALLS_IN_FLIGHT} call ids are in flight")
        call_id = heapq.heappop(self._free)
        self._pending.add(call_id)
        return call_id

    def release(self, call_id: int) -> bool:
        """An answer for ``call_id`` arrived: free it. False if nobody waits for it."""
        if call_id not in self._pending:
            return False
        self._pending.discard(call_id)
        heapq.heappush(self._free, call_id)
        if call_id in self._abandoned:
            self._abandoned.discard(call_id)
            return False
        return True

    def abandon(self, call_id: int) -> None:
        """The caller stopped waiting; the id stays reserved until the answer comes."""
        if call_id in self._pending:
            self._abandoned.add(call_id)

    def fail_all(self) -> list[int]:
        """The connection ended: free every id; returns those someone still waited for."""
        waiting = sorted(self._pending - self._abandoned)
        self._pending.clear()
        self._abandoned.clear()
        self._free = list(range(MAX_CALLS_IN_FLIGHT))
        return waiting

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._pending

    def __len__(self) -> int:
        return len(self._pending)


class ServerInFlightTable:
    """The server's ids in flight: a request whose id is already running is ignored."""

    __slots__ = ("_running",)

    def __init__(self) -> None:
        self._running: set[int] = set()

    def start(self, call_id: int) -> bool:
        """Mark ``call_id`` running; False (ignore the request) if it already is."""
        if call_id in self._running:
            return False
        self._running.add(call_id)
        return True

    def finish(self, call_id: int) -> bool:
        """The response for ``call_id`` is sent; False if it was not running."""
        if call_id not in self._running:
            return False
        self._running.discard(call_id)
        return True

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._running

    def __len__(self) -> int:
        return len(self._running)
