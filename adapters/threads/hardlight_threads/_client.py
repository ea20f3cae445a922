"""The blocking client: an I/O thread feeds the core's ``ClientDriver``; calls wait on
futures.

Thread-safe: any number of threads may call at once (every call into the driver
holds one lock). When 256 calls are already pending, a further call fails at once
with ``TooManyCallsInFlight`` (nothing is sent), exactly as the reference client does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from concurrent.futures import Future
from typing import Any, TypeVar

from hardlight_core import ClientDriver, EventDelivered, HardLightError
from hardlight_support import BlockingChannelReader, CertificateMismatch, ClientConfig

from ._pump import SocketPump

__all__ = ["Client", "Subscription", "client_class"]

S = TypeVar("S")


class Subscription(BlockingChannelReader[EventDelivered]):
    """Events the server sends to this connection: iterate (blocking) or ``get(timeout)``.
    Every subscription gets every event; it ends when the client disconnects."""


class Client:
    """A blocking HardLight client of one service: ``Client(Counter, config)``.

    Has one blocking method per service method (``client.get()`` returns the value).
    """

    def __init__(self, service: type[Any], config: ClientConfig | None = None) -> None:
        self.service = service
        self.config = config or ClientConfig()
        self._lock = threading.RLock()
        self._driver = ClientDriver(service, self.config)
        self.spec = self._driver.spec
        self._pump: SocketPump | None = None
        self._reconnector: threading.Thread | None = None
        for method in self.spec.methods:
            if not hasattr(type(self), method.name):
                setattr(self, method.name, self._make_method(method.name))

    def _make_method(self, name: str) -> Any:
        def method(*args: Any, timeout: float | None = None) -> Any:
            return self.call(name, *args, timeout=timeout)

        method.__name__ = name
        return method

    # -- connection ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        return self._driver.connected

    @property
    def events_dropped(self) -> int:
        """Events refused because a subscriber's queue was full."""
        return self._driver.events_dropped

    def connect(self) -> None:
        """Open the connection (TCP, TLS, upgrade).

        Raises ConnectError (an OSError) when the server cannot be reached in
        ``connect_timeout``, ConnectionRefused when it refuses the upgrade,
        CertificateMismatch when its certificate is not the pinned one.
        """
        driver, config = self._driver, self.config
        opened: Future[None] = Future()
        with self._lock:
            driver.new_connection(opened, time.monotonic())
        deadline = time.monotonic() + config.connect_timeout
        sock: socket.socket | None = None
        try:
            host, port = config.host_port
            sock = socket.create_connection((host, port), timeout=config.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not config.plaintext:
                context = config.tls.ssl_context()
                sock = context.wrap_socket(sock, server_hostname=config.server_hostname)
                config.tls.check_peer(sock.getpeercert(binary_form=True))
            self._start_pump(sock)
            opened.result(max(0.0, deadline - time.monotonic()))
        except BaseException as exc:
            if self._pump is not None:
                self._pump.stop()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                error = driver.connect_failed(exc)
            raise error from exc

    def _start_pump(self, sock: socket.socket) -> None:
        driver, lock = self._driver, self._lock
        core = driver.core

        def on_data(data: bytes, now: float) -> bool:
            with lock:
                return driver.core is core and driver.receive_data(data, now)

        def on_timer(now: float) -> bool:
            with lock:
                return driver.handle_timer(now)

        def get_timer() -> float | None:
            with lock:
                return driver.get_timer()

        def take_output() -> bytes:
            with lock:
                return driver.data_to_send() if driver.core is core else b""

        def finished() -> bool:
            with lock:
                return driver.core is not core or core is None or core.connection.state.ended

        def on_end() -> None:
            with contextlib.suppress(OSError):
                sock.close()
            with lock:
                if driver.core is not core:
                    return
                driver.connection_lost(time.monotonic())
                reconnect = driver.should_reconnect
            if reconnect:
                self._start_reconnect()

        self._pump = SocketPump(
            sock, on_data, on_timer, get_timer, take_output, finished, on_end, "hardlight-client"
        )
        self._pump.start()
        self._pump.wake()

    def disconnect(self) -> None:
        """Close the connection (close handshake, bounded wait); subscriptions end."""
        driver = self._driver
        with self._lock, contextlib.suppress(HardLightError):
            driver.disconnect()
        pump = self._pump
        if pump is not None:
            pump.wake()
            if pump.thread is not threading.current_thread() and pump.thread.is_alive():
                pump.thread.join(2.0)
                if pump.thread.is_alive():
                    pump.stop()
                    pump.thread.join(2.0)
        with self._lock:
            driver.disconnected()
            driver.close_subscriptions()

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- calls -------------------------------------------------------------------------------

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``method``; returns its decoded result or raises an RpcError (blocking;
        CallTimeout after ``timeout`` seconds, None means ``config.call_timeout``)."""
        future: Future[Any] = Future()
        with self._lock:
            self._driver.start_call(method, args, future, time.monotonic(), timeout)
        pump = self._pump
        if pump is not None:
            pump.wake()  # writes the call, and re-reads the timer for its timeout
        return future.result()

    def state(self) -> Any:
        """The mirror of this connection's server-side state."""
        with self._lock:
            return self._driver.state

    def subscribe(self) -> Subscription:
        """The events the server sends from now on (each subscription gets every event)."""
        with self._lock:
            return Subscription(self._driver.subscribe(), self._lock)

    # -- reconnection ----------------------------------------------------------------------------

    def _start_reconnect(self) -> None:
        if self._reconnector is not None and self._reconnector.is_alive():
            return

        def again() -> None:
            for delay in self._driver.reconnect_delays():
                time.sleep(delay)
                try:
                    self.connect()
                except (OSError, HardLightError, CertificateMismatch) as exc:
                    with self._lock:
                        self._driver.reconnect_failed(exc)

        self._reconnector = threading.Thread(target=again, name="hardlight-reconnect", daemon=True)
        self._reconnector.start()


def client_class(service: type[S]) -> type[Any]:
    """A blocking client class for ``service``."""

    def __init__(self: Client, config: ClientConfig | None = None) -> None:
        Client.__init__(self, service, config)

    return type(f"{service.__name__}Client", (Client,), {"__init__": __init__})
