"""SIGTERM and SIGINT as a request for a graceful stop, for every adapter's ``serve_forever``.

While a server's ``serve_forever()`` / ``run()`` runs in the main thread, :class:`StopSignals`
replaces the handlers of SIGTERM and SIGINT; the first of them asks the server to stop
gracefully (running calls get the grace, then connections close with 1001). A second one
does what it would have done without us (the handler found before: Python's
``KeyboardInterrupt`` for SIGINT, termination for SIGTERM). On the way out the old
handlers are put back. Outside the main thread nothing is installed (Python allows
signal handlers only there), and a signal that is ignored (``SIG_IGN``, e.g. SIGINT of a
job started in the background by a shell) stays ignored, as Python itself leaves it.

The handler itself only records the signal and calls ``wake``: nothing that takes a lock
(a signal handler runs between two bytecodes of the main thread, which may hold one).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "StopSignals", "loop_waker", "signal_name"]

#: the signals that stop a server gracefully
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any] | int | None


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopSignals:
    """A context manager: while entered (in the main thread), the first SIGTERM or SIGINT
    sets :attr:`received` and calls ``wake(signum)``.

    ``wake`` must be safe to call from a signal handler: schedule work on an event loop
    (:func:`loop_waker`), or leave it None and poll :attr:`received` (the threads server).
    """

    def __init__(
        self,
        wake: Callable[[int], object] | None = None,
        signals: tuple[signal.Signals, ...] = STOP_SIGNALS,
    ) -> None:
        self._wake = wake
        self._signals = signals
        self._old: dict[int, Handler] = {}
        #: the first stop signal received (None: none yet)
        self.received: int | None = None

    @property
    def installed(self) -> bool:
        """True while our handlers are in place (False outside the main thread)."""
        return bool(self._old)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                if signal.getsignal(sig) != signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        """Put back the handlers found at ``__enter__``."""
        old, self._old = self._old, {}
        for sig, handler in old.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
            if self._wake is not None:
                self._wake(signum)
            return
        # a second signal while stopping: what it would have done without us
        previous = self._old.get(signum)
        self.restore()
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            signal.raise_signal(signum)


def loop_waker(callback: Callable[[int], object]) -> Callable[[int], None]:
    """A function that runs ``callback(signum)`` soon on the running event loop (asyncio,
    or trio), safe to call from a signal handler or another thread. Call it on the loop."""
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()

        def wake_trio(signum: int) -> None:
            token.run_sync_soon(callback, signum)

        return wake_trio
    import asyncio

    loop = asyncio.get_running_loop()

    def wake_asyncio(signum: int) -> None:
        loop.call_soon_threadsafe(callback, signum)

    return wake_asyncio
