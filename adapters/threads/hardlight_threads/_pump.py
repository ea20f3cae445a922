"""One I/O thread per socket: it alone reads and writes (an SSL object must not be
used from two threads at once); other threads only ask it to flush, through a
wake-up socket pair. It runs the core's timer when it is due, however busy the
socket is."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable

__all__ = ["SocketPump"]

POLL = 0.2  # the longest wait, so stop() is noticed
SEND_TIMEOUT = 10.0


class SocketPump:
    """Runs ``on_data(bytes)`` for what arrives (b"" at EOF) and ``on_timer(now)`` when
    ``get_timer()`` is due, writes ``take_output()`` after each and whenever
    :meth:`wake` is called. ``on_data``/``on_timer`` return False to end the loop, and
    it ends once ``finished()`` after a write."""

    def __init__(
        self,
        sock: socket.socket,
        on_data: Callable[[bytes, float], bool],
        on_timer: Callable[[float], bool],
        get_timer: Callable[[], float | None],
        take_output: Callable[[], bytes],
        finished: Callable[[], bool],
        on_end: Callable[[], None],
        name: str,
    ) -> None:
        self.sock = sock
        self._on_data = on_data
        self._on_timer = on_timer
        self._get_timer = get_timer
        self._take_output = take_output
        self._finished = finished
        self._on_end = on_end
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = False
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)

    def start(self) -> None:
        """Start the I/O thread."""
        self.thread.start()

    def wake(self) -> None:
        """Ask the I/O thread to write pending output (any thread, never blocks)."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def stop(self) -> None:
        """Ask the I/O thread to end."""
        self._stop = True
        self.wake()

    def _write(self) -> bool:
        data = self._take_output()
        if data:
            self.sock.settimeout(SEND_TIMEOUT)
            try:
                self.sock.sendall(data)
            except (OSError, ssl.SSLError):
                return False
        return True

    def _read(self) -> bytes | None:
        # non-blocking: a readable socket may carry only TLS records with no
        # application data (session tickets), and recv must not wait for more
        self.sock.setblocking(False)
        try:
            return self.sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            return None
        except (OSError, ssl.SSLError):
            return b""

    def run(self) -> None:
        """The I/O loop (in the calling thread); ends with ``on_end()``."""
        sock = self.sock
        try:
            while not self._stop:
                deadline = self._get_timer()
                now = time.monotonic()
                wait = POLL if deadline is None else min(POLL, max(0.0, deadline - now))
                if isinstance(sock, ssl.SSLSocket) and sock.pending() > 0:
                    readable: list[socket.socket] = [sock]
                else:
                    readable, _, _ = select.select([sock, self._wake_r], [], [], wait)
                if self._wake_r in readable:
                    with contextlib.suppress(OSError):
                        while self._wake_r.recv(4096):
                            pass
                more = True
                if sock in readable:
                    data = self._read()
                    if data is not None:
                        more = self._on_data(data, time.monotonic()) and bool(data)
                if more and deadline is not None and time.monotonic() >= deadline:
                    more = self._on_timer(time.monotonic())
                if not self._write() or not more or self._finished():
                    break
        finally:
            try:
                self._on_end()
            finally:
                with contextlib.suppress(OSError):
                    self._wake_r.close()
                with contextlib.suppress(OSError):
                    self._wake_w.close()
