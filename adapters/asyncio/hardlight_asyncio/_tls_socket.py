"""TLS on a non-blocking ``ssl.SSLSocket``, for event loops with ``add_reader``.

asyncio's own TLS (``sslproto``) moves every record through two MemoryBIOs and
several Python-level buffers and callbacks. Reading and writing an SSLSocket lets
OpenSSL do the socket I/O in C: one call per read or write. On loopback this saves
about a sixth of a small call's round trip (``benchmarks/``). The adapter uses it
where the loop has ``add_reader``/``add_writer`` and falls back to
``loop.create_connection(ssl=...)`` elsewhere (Windows' proactor loop).

Everything is bounded: reads per readiness event, handshakes in progress, the
handshake's duration, and the linger after close.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = [
    "TLSListener",
    "TLSSocketTransport",
    "open_tls_connection",
    "supports_socket_tls",
]

log = logging.getLogger("hardlight")

#: most bytes handed to the protocol per readiness event (fairness between sockets)
MAX_READ_PER_EVENT = 256 * 1024
#: a TLS record carries at most 16 KiB; a read this large suggests more are queued
_FULL_RECORD = 16 * 1024
#: one read's buffer: above a record, below malloc's mmap threshold
_READ_SIZE = 64 * 1024
#: accepted sockets whose TLS handshake is still running, per listener
MAX_HANDSHAKES_IN_PROGRESS = 1024

_RETRY = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)


def supports_socket_tls(loop: asyncio.AbstractEventLoop) -> bool:
    """True if ``loop`` can drive a socket by readiness callbacks."""
    if isinstance(loop, asyncio.SelectorEventLoop):
        return True
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is an optional extra
        return False
    return isinstance(loop, uvloop.Loop)


class TLSSocketTransport(asyncio.Transport):
    """An ``asyncio.Transport`` over an established, non-blocking ``ssl.SSLSocket``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: ssl.SSLSocket,
        protocol: asyncio.Protocol,
        *,
        linger: float = 5.0,
    ) -> None:
        super().__init__(_extra_info(sock))
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._linger = linger
        # _pending[0] is the write OpenSSL was last given: after SSLWantWrite it must be
        # retried with the same bytes, so later writes queue behind it
        self._pending: deque[bytes] = deque()
        self._pending_size = 0
        self._high_water = 64 * 1024
        self._low_water = 16 * 1024
        self._protocol_paused = False
        self._reading = True
        self._writer_on = False
        self._closing = False
        self._finished = False
        self._eof = False
        self._linger_timer: asyncio.TimerHandle | None = None
        protocol.connection_made(self)
        if not self._finished:
            loop.add_reader(self._fd, self._on_readable)

    # -- reading ------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        if self._writer_on and self._pending:
            self._on_writable()  # a write may have been waiting for the peer's data
        chunks: list[bytes] = []
        total = 0
        eof = False
        error: BaseException | None = None
        while total < MAX_READ_PER_EVENT:
            try:
                data = self._sock.recv(_READ_SIZE)
            except ssl.SSLWantWriteError:
                self._want_writer()
                break
            except _RETRY:
                break
            except ssl.SSLZeroReturnError:
                eof = True
                break
            except OSError as exc:
                error = exc
                break
            if not data:
                eof = True
                break
            chunks.append(data)
            total += len(data)
            if len(data) < _FULL_RECORD and not self._sock.pending():
                break  # a short record ends what the peer wrote: no need to ask again
        if self._closing:
            if eof or error is not None:
                self._finish(None)
            return  # lingering for the peer's close: what it still sends is dropped
        if chunks:
            try:
                self._protocol.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            except Exception as exc:
                self._fatal(exc, "protocol.data_received() failed")
                return
        if error is not None:
            self._fatal(error, "TLS read failed")
        elif eof and not self._finished:
            self._eof = True
            self._stop_reading()
            try:
                keep_open = self._protocol.eof_received()
            except Exception as exc:
                self._fatal(exc, "protocol.eof_received() failed")
                return
            if keep_open:
                log.debug("TLS transport ignores eof_received() returning True")
            self.close()

    def pause_reading(self) -> None:
        """Stop calling data_received until :meth:`resume_reading`."""
        if self._reading and not self._closing:
            self._stop_reading()

    def resume_reading(self) -> None:
        """Undo :meth:`pause_reading`."""
        if not self._reading and not self._closing and not self._eof:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    def is_reading(self) -> bool:
        """True unless paused or closing."""
        return self._reading and not self._closing

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    # -- writing ------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send ``data`` (queued if the socket is full)."""
        if self._closing or self._finished:
            return
        if not data:
            return
        if self._pending:
            self._pending.append(bytes(data))
            self._pending_size += len(data)
            self._check_high_water()
            return
        try:
            sent = self._sock.send(data)
        except _RETRY:
            sent = 0
        except OSError as exc:
            self._fatal(exc, "TLS write failed")
            return
        if sent < len(data):
            rest = bytes(data[sent:])
            self._pending.append(rest)
            self._pending_size += len(rest)
            self._want_writer()
            self._check_high_water()

    def _on_writable(self) -> None:
        pending = self._pending
        while pending:
            head = pending[0]
            try:
                sent = self._sock.send(head)
            except _RETRY:
                return
            except OSError as exc:
                self._fatal(exc, "TLS write failed")
                return
            self._pending_size -= sent
            if sent < len(head):
                pending[0] = head[sent:]
                continue
            pending.popleft()
            if len(pending) > 1:  # the retry rule is met: coalesce what queued behind
                joined = b"".join(pending)
                pending.clear()
                pending.append(joined)
        if self._writer_on:
            self._writer_on = False
            self._loop.remove_writer(self._fd)
        if self._protocol_paused and self._pending_size <= self._low_water:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._fatal(exc, "protocol.resume_writing() failed")
                return
        if self._closing:
            self._shutdown()

    def _want_writer(self) -> None:
        if not self._writer_on and not self._finished:
            self._writer_on = True
            self._loop.add_writer(self._fd, self._on_writable)

    def _check_high_water(self) -> None:
        if not self._protocol_paused and self._pending_size > self._high_water:
            self._protocol_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as exc:
                self._fatal(exc, "protocol.pause_writing() failed")

    def get_write_buffer_size(self) -> int:
        """Bytes accepted by :meth:`write` and not yet handed to OpenSSL."""
        return self._pending_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """(low, high) water marks for pause_writing/resume_writing."""
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks (defaults as asyncio's: 64 KiB high, a quarter of it low)."""
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        self._check_high_water()

    def can_write_eof(self) -> bool:
        """TLS has no half-close."""
        return False

    def write_eof(self) -> None:
        """Not supported over TLS."""
        raise NotImplementedError("TLS cannot half-close; use close()")

    # -- ending -------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        """True once close() or abort() was called or the connection ended."""
        return self._closing or self._finished

    def close(self) -> None:
        """Send what is queued, then close_notify; wait briefly for the peer's, then close."""
        if self._closing or self._finished:
            return
        self._closing = True
        if not self._pending:
            self._shutdown()

    def _shutdown(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._sock.unwrap()  # sends close_notify; then usually wants the peer's
        if self._eof:
            self._finish(None)
            return
        if not self._reading:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)
        # the peer answers close_notify and closes; reading until then avoids
        # resetting a connection whose last bytes the peer has not read yet
        self._linger_timer = self._loop.call_later(self._linger, self._finish, None)

    def abort(self) -> None:
        """Close at once, dropping anything queued."""
        self._finish(None)

    def _fatal(self, exc: BaseException, message: str) -> None:
        if isinstance(exc, OSError) and exc.errno in (
            errno.ECONNRESET,
            errno.EPIPE,
            errno.ECONNABORTED,
        ):
            log.debug("%s: %s", message, exc)
        elif isinstance(exc, ssl.SSLError | OSError):
            log.debug("%s: %r", message, exc)
        else:
            context = {"message": message, "exception": exc, "transport": self}
            self._loop.call_exception_handler({**context, "protocol": self._protocol})
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._closing = True
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)
        if self._writer_on:
            self._writer_on = False
            self._loop.remove_writer(self._fd)
        self._pending.clear()
        self._pending_size = 0
        self._loop.call_soon(self._lost, exc)

    def _lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc if isinstance(exc, Exception) else None)
        finally:
            self._sock.close()

    # -- the rest of the Transport interface --------------------------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol this transport feeds."""
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Feed another protocol from now on."""
        self._protocol = protocol  # type: ignore[assignment]


def _extra_info(sock: ssl.SSLSocket) -> dict[str, Any]:
    extra: dict[str, Any] = {"socket": sock, "ssl_object": sock, "sslcontext": sock.context}
    with contextlib.suppress(OSError):
        extra["peername"] = sock.getpeername()
        extra["sockname"] = sock.getsockname()
    with contextlib.suppress(ValueError):
        extra["peercert"] = sock.getpeercert()
        extra["cipher"] = sock.cipher()
    return extra


async def _wait_ready(loop: asyncio.AbstractEventLoop, fd: int, readable: bool) -> None:
    future: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not future.done():
            future.set_result(None)

    if readable:
        loop.add_reader(fd, ready)
    else:
        loop.add_writer(fd, ready)
    try:
        await future
    finally:
        if readable:
            loop.remove_reader(fd)
        else:
            loop.remove_writer(fd)


async def tls_handshake(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
) -> ssl.SSLSocket:
    """Run the TLS handshake on connected, non-blocking ``sock``; closes it on failure."""
    try:
        tls = context.wrap_socket(
            sock,
            server_side=server_side,
            server_hostname=server_hostname,
            do_handshake_on_connect=False,
        )
    except BaseException:
        sock.close()
        raise
    try:
        fd = tls.fileno()
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                await _wait_ready(loop, fd, readable=True)
            except ssl.SSLWantWriteError:
                await _wait_ready(loop, fd, readable=False)
    except BaseException:
        tls.close()
        raise


def _tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def open_tls_connection(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.Protocol],
    host: str,
    port: int,
    context: ssl.SSLContext,
    server_hostname: str | None,
) -> tuple[TLSSocketTransport, asyncio.Protocol]:
    """Connect, handshake, and start ``protocol_factory()`` on a :class:`TLSSocketTransport`.

    Cancel it (e.g. with ``asyncio.wait_for``) to bound the time: the socket is closed.
    """
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    errors: list[OSError] = []
    for family, type_, proto, _name, address in infos:
        sock = socket.socket(family, type_, proto)
        try:
            _tune(sock)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        tls = await tls_handshake(
            loop, sock, context, server_side=False, server_hostname=server_hostname
        )
        try:
            protocol = protocol_factory()
            transport = TLSSocketTransport(loop, tls, protocol)
        except BaseException:
            tls.close()
            raise
        return transport, protocol
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"cannot connect to {host}:{port}: {'; '.join(map(str, errors))}")


class TLSListener:
    """Listening sockets whose accepted connections get a :class:`TLSSocketTransport`.

    The part of ``asyncio.Server``'s interface the adapter uses: ``sockets``,
    ``close()``, ``wait_closed()``.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.Protocol],
        context: ssl.SSLContext,
        sockets: list[socket.socket],
        *,
        handshake_timeout: float,
        backlog: int,
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._context = context
        self._sockets = sockets
        self._handshake_timeout = handshake_timeout
        self._backlog = backlog
        self._handshakes: set[asyncio.Task[None]] = set()
        self._closed = False
        self.refused = 0
        for sock in sockets:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)

    @classmethod
    async def bind(
        cls,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.Protocol],
        host: str | None,
        port: int,
        context: ssl.SSLContext,
        *,
        backlog: int = 1024,
        handshake_timeout: float = 10.0,
        reuse_port: bool = False,
    ) -> TLSListener:
        """Listen on every address ``host`` resolves to (all interfaces for "" or None).

        ``reuse_port`` sets ``SO_REUSEPORT`` (several processes listening on one port)."""
        if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
            raise ValueError("reuse_port=True: this operating system has no SO_REUSEPORT")
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        sockets: list[socket.socket] = []
        seen: set[Any] = set()
        try:
            for family, type_, proto, _name, address in infos:
                if (family, address) in seen:
                    continue
                seen.add((family, address))
                sock = socket.socket(family, type_, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(backlog)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return cls(
            loop,
            protocol_factory,
            context,
            sockets,
            handshake_timeout=handshake_timeout,
            backlog=backlog,
        )

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty once closed)."""
        return () if self._closed else tuple(self._sockets)

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(self._backlog):
            try:
                conn, _address = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                # out of file descriptors or similar: stop accepting for a moment
                # rather than spinning on a socket that stays readable
                log.warning("accept failed (%s); pausing accepts for 1 s", exc)
                self._loop.remove_reader(listening.fileno())
                self._loop.call_later(1.0, self._resume_accepting, listening)
                return
            if len(self._handshakes) >= MAX_HANDSHAKES_IN_PROGRESS:
                self.refused += 1
                conn.close()
                continue
            _tune(conn)
            task = self._loop.create_task(self._start(conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    def _resume_accepting(self, listening: socket.socket) -> None:
        if not self._closed:
            self._loop.add_reader(listening.fileno(), self._accept, listening)

    async def _start(self, conn: socket.socket) -> None:
        task = asyncio.current_task()
        assert task is not None
        timer = self._loop.call_later(self._handshake_timeout, task.cancel)
        try:
            tls = await tls_handshake(self._loop, conn, self._context, server_side=True)
        except asyncio.CancelledError:
            if self._closed:
                raise
            log.debug("TLS handshake timed out after %s s", self._handshake_timeout)
            return
        except (OSError, ValueError) as exc:
            log.debug("TLS handshake failed: %r", exc)
            return
        finally:
            timer.cancel()
        if self._closed:
            tls.close()
            return
        try:
            TLSSocketTransport(self._loop, tls, self._factory())
        except Exception:
            tls.close()
            log.exception("could not start a connection")

    def close(self) -> None:
        """Stop accepting; abandon handshakes still running."""
        if self._closed:
            return
        self._closed = True
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        for task in self._handshakes:
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait for abandoned handshakes to unwind."""
        if self._handshakes:
            await asyncio.gather(*self._handshakes, return_exceptions=True)
