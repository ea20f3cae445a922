"""The blocking client: an I/O thread feeds the core's ``ClientDriver``; calls wait on
futures.

Thread-safe: any number of threads may call at once (every call into the driver
holds one lock). When 256 calls are already pending, a further call fails at once
with ``TooManyCallsInFlight`` (nothing is sent), exactly as the reference client does.

Typed calls: ``client.proxy`` (or ``with connect(Kv, config) as kv``) is typed as the
service, whose methods are ``async def``; on this proxy they never suspend, and
:func:`run` makes the call: ``run(kv.get("a"))`` blocks and returns what ``Kv.get``
declares, so a type checker checks arguments and result.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from hardlight_core import EventDelivered, HardLightError
from hardlight_core._client_driver import proxy_client
from hardlight_support import BlockingChannelReader, CertificateMismatch, ClientBase, ClientConfig

from ._pump import SocketPump

__all__ = [
    "Client",
    "ReconnectHook",
    "Subscription",
    "client_class",
    "client_of",
    "connect",
    "run",
]

log = logging.getLogger("hardlight")

S = TypeVar("S")
T = TypeVar("T")
C = TypeVar("C", bound="Client[Any]")

#: ``def hook(client) -> None``: runs (in the reconnecting thread) after each reconnect
ReconnectHook = Callable[["Client[Any]"], None]


class Subscription(BlockingChannelReader[EventDelivered]):
    """Events the server sends to this connection: iterate (blocking) or ``get(timeout)``.
    Every subscription gets every event; it ends when the client disconnects."""


class Client(ClientBase[S]):
    """A blocking HardLight client of one service: ``Client(Counter, config)``.

    Has one blocking method per service method (``client.get()`` returns the value,
    untyped); ``run(client.proxy.get())`` is the same call, typed.
    """

    _blocking_proxy = True

    def __init__(self, service: type[S], config: ClientConfig | None = None) -> None:
        self._lock = threading.RLock()
        self._pump: SocketPump | None = None
        self._reconnector: threading.Thread | None = None
        super().__init__(service, config, guard=self._lock)

    def on_reconnect(self, hook: ReconnectHook) -> ReconnectHook:
        """Run ``hook(client)`` after each automatic reconnect, before any other caller's
        call is sent (calls made meanwhile wait until it returns). Re-subscribe there.
        One hook; returns it (a decorator)."""
        self._set_reconnect_hook(hook)
        return hook

    # -- connection ---------------------------------------------------------------------------

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

    def __enter__(self: C) -> C:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- calls -------------------------------------------------------------------------------

    def call(
        self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """Call ``method``; returns its decoded result or raises an RpcError (blocking;
        CallTimeout after ``timeout`` seconds, None means ``config.call_timeout``)."""
        future: Future[Any] = Future()
        with self._lock:
            self._driver.start_call(method, args, future, time.monotonic(), timeout, kwargs)
        pump = self._pump
        if pump is not None:
            pump.wake()  # writes the call, and re-reads the timer for its timeout
        return future.result()

    def subscribe(self) -> Subscription:
        """The events the server sends from now on (each subscription gets every event)."""
        return Subscription(self._subscription_channel(), self._lock, self._unsubscribe)

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
                    continue
                self._run_hook()

        self._reconnector = threading.Thread(target=again, name="hardlight-reconnect", daemon=True)
        self._reconnector.start()

    def _run_hook(self) -> None:
        driver = self._driver
        with self._lock:
            hook = driver.reconnect_hook
            if hook is None or not driver.hook_pending:
                return
            token = driver.enter_hook()  # this thread's calls pass; others' are held
        try:
            hook(self)
        except Exception:
            log.exception("the reconnect hook of the client of %s raised", driver.address)
        finally:
            with self._lock:
                driver.leave_hook(token)
            pump = self._pump
            if pump is not None:
                pump.wake()  # send the calls held while it ran


def run(call: Coroutine[Any, Any, T]) -> T:
    """Make a call of a blocking proxy: ``run(kv.get("a"))`` blocks until the answer and
    returns it, typed as the service method declares (raises what the call raises)."""
    try:
        call.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    call.close()
    raise TypeError(
        "hardlight_threads.run() takes a call of a blocking proxy (run(kv.get(key)), kv from "
        "hardlight_threads.connect or client.proxy); this coroutine waits on an event loop"
    )


@contextlib.contextmanager
def connect(
    service: type[S],
    config: ClientConfig | None = None,
    *,
    on_reconnect: ReconnectHook | None = None,
) -> Iterator[S]:
    """Connect a blocking client of ``service`` and yield its typed proxy; disconnect on
    exit::

        with connect(Kv, config) as kv:
            value = run(kv.get("a"))         # blocks; typed as Kv.get declares

    ``client_of(kv)`` is the :class:`Client` (state, subscribe, ``call``)."""
    client = Client(service, config)
    if on_reconnect is not None:
        client.on_reconnect(on_reconnect)
    client.connect()
    try:
        yield client.proxy
    finally:
        client.disconnect()


def client_of(proxy: object) -> Client[Any]:
    """The :class:`Client` behind a proxy from :func:`connect` or ``client.proxy``."""
    client = proxy_client(proxy)
    if not isinstance(client, Client):
        raise TypeError(f"{proxy!r} is not a proxy of a hardlight_threads client")
    return client


def client_class(service: type[S]) -> type[Any]:
    """A blocking client class for ``service`` (untyped methods: prefer :func:`connect`
    or ``client.proxy`` with :func:`run` for calls a type checker checks)."""

    def __init__(self: Client[Any], config: ClientConfig | None = None) -> None:
        Client.__init__(self, service, config)

    return type(f"{service.__name__}Client", (Client,), {"__init__": __init__})
