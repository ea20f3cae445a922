"""One I/O thread per socket: it alone reads and writes (an SSL object must not be
used from two threads at once); other threads only ask it to flush, through a
wake-up socket pair."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable

__all__ = ["SocketPump"]

POLL = 0.2
SEND_TIMEOUT = 10.0


class SocketPump:
    """Runs ``on_data(bytes)`` for what arrives (b"" at EOF), ``on_tick()`` every
    ``POLL`` seconds, and writes ``take_output()`` whenever :meth:`wake` is called."""

    def __init__(
        self,
        sock: socket.socket,
        on_data: Callable[[bytes], bool],
        on_tick: Callable[[], bool],
        take_output: Callable[[], bytes],
        on_end: Callable[[], None],
        name: str,
    ) -> None:
        self.sock = sock
        self._on_data = on_data
        self._on_tick = on_tick
        self._take_output = take_output
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

    def run(self) -> None:
        """The I/O loop (in the calling thread); ends with ``on_end()``."""
        sock = self.sock
        try:
            while not self._stop:
                pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
                if not pending:
                    readable, _, _ = select.select([sock, self._wake_r], [], [], POLL)
                else:
                    readable = [sock]
                if self._wake_r in readable:
                    with contextlib.suppress(OSError):
                        while self._wake_r.recv(4096):
                            pass
                if sock in readable:
                    # non-blocking: a readable socket may carry only TLS records with no
                    # application data (session tickets), and recv must not wait for more
                    sock.setblocking(False)
                    try:
                        data = sock.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        data = None
                    except (OSError, ssl.SSLError):
                        data = b""
                    if data is not None:
                        more = self._on_data(data)
                        if not self._write() or not more or not data:
                            break
                        continue
                elif not readable and not self._on_tick():
                    self._write()
                    break
                if not self._write():
                    break
        finally:
            try:
                self._on_end()
            finally:
                with contextlib.suppress(OSError):
                    self._wake_r.close()
            with contextlib.suppress(OSError):
                self._wake_w.close()
