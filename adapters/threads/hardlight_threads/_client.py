"""The blocking client: a reader thread feeds ``ClientCore``; calls wait on futures.

Thread-safe: any number of threads may call at once. When 256 calls are already
pending, a further call fails at once with ``TooManyCallsInFlight`` (nothing is
sent), exactly as the reference client does.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from hardlight_core import (
    CallOutcome,
    CallTimeout,
    ClientClosed,
    ClientConfig,
    ClientCore,
    ClientNotConnected,
    ClientOpened,
    EventDelivered,
    HardLightError,
    RpcError,
    ServiceSpec,
)

from ._pump import SocketPump

__all__ = ["Client", "Subscription", "client_class"]

log = logging.getLogger("hardlight")

EVENT_QUEUE_SIZE = 10_000
S = TypeVar("S")


class Subscription:
    """Events the server sends to this connection: iterate (blocking) or ``get(timeout)``."""

    def __init__(self, q: queue.Queue[EventDelivered | None]) -> None:
        self._queue = q

    def get(self, timeout: float | None = None) -> EventDelivered | None:
        """The next event, or None on timeout / after the client disconnected."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self) -> Iterator[EventDelivered]:
        while True:
            event = self._queue.get()
            if event is None:
                return
            yield event


class Client:
    """A blocking HardLight client of one service: ``Client(Counter, config)``.

    Has one blocking method per service method (``client.get()`` returns the value).
    """

    def __init__(self, service: type[Any], config: ClientConfig | None = None) -> None:
        self.service = service
        self.config = config or ClientConfig()
        self.spec = ServiceSpec.of(service)
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._core: ClientCore | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._pump: SocketPump | None = None
        self._pending: dict[int, Future[Any]] = {}
        self._opened: Future[None] | None = None
        self._events: queue.Queue[EventDelivered | None] = queue.Queue(EVENT_QUEUE_SIZE)
        self.events_dropped = 0
        self._closing = False
        self._state: Any = None
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
        return (
            self._sock is not None
            and self._opened is not None
            and self._opened.done()
            and (self._opened.exception() is None)
        )

    def connect(self) -> None:
        """Open the connection (TLS, upgrade); raises on refusal or a certificate problem."""
        self._closing = False
        host, port = self.config.host_port
        core = ClientCore(
            self.service,
            f"{host}:{port}",
            compression_level=self.config.compression_level,
            limits=self.config.limits,
        )
        sock: socket.socket = socket.create_connection(
            (host, port), timeout=self.config.connect_timeout
        )
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self.config.plaintext:
                context = self.config.tls.ssl_context()
                sock = context.wrap_socket(sock, server_hostname=self.config.server_hostname)
                self.config.tls.check_peer(sock.getpeercert(binary_form=True))
        except BaseException:
            sock.close()
            raise
        self._opened = Future()
        with self._lock:
            self._core = core
            self._sock = sock
        pump = SocketPump(
            sock,
            on_data=lambda data: self._on_data(core, data),
            on_tick=lambda: self._on_tick(core),
            take_output=lambda: self._take_output(core),
            on_end=lambda: self._on_end(core, sock),
            name="hardlight-client",
        )
        self._pump = pump
        self._reader = pump.thread
        pump.start()
        pump.wake()
        try:
            self._opened.result(self.config.connect_timeout)
        except FutureTimeout:
            pump.stop()
            raise ClientNotConnected("handshake timed out") from None

    def disconnect(self) -> None:
        """Close the connection (close handshake, bounded wait) and stop the reader."""
        self._closing = True
        with self._lock:
            core = self._core
            if core is not None:
                with contextlib.suppress(HardLightError):
                    core.close()
        self._flush()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(2.0)
            if reader.is_alive() and self._pump is not None:
                self._pump.stop()
                reader.join(2.0)
        self._fail_all(ClientNotConnected("client disconnected"))

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- calls -------------------------------------------------------------------------------

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``method``; returns its decoded result or raises an RpcError (blocking)."""
        future: Future[Any] = Future()
        with self._lock:
            core = self._core
            if core is None or self._sock is None:
                raise ClientNotConnected("not connected")
            call_id = core.start_call(method, args)
            self._pending[call_id] = future
        self._flush()
        timeout = self.config.call_timeout if timeout is None else timeout
        try:
            return future.result(timeout)
        except FutureTimeout:
            with self._lock:
                if self._pending.pop(call_id, None) is future and self._core is core:
                    core.abandon_call(call_id)
            raise CallTimeout(f"{method}: no answer within {timeout} s") from None

    def state(self) -> Any:
        """The mirror of this connection's server-side state."""
        with self._lock:
            return self._core.state if self._core is not None else self._state

    def subscribe(self) -> Subscription:
        """The events the server sends to this connection (one shared stream)."""
        return Subscription(self._events)

    # -- internals ---------------------------------------------------------------------------

    def _flush(self) -> None:
        pump = self._pump
        if pump is not None:
            pump.wake()

    def _on_data(self, core: ClientCore, data: bytes) -> bool:
        with self._lock:
            outcomes = core.receive_data(data, time.monotonic())
            # claim the waiting futures now: once the lock is released, a new call may
            # take an id this batch just freed
            claimed = self._claim(outcomes)
        self._handle(outcomes, claimed)
        return not any(isinstance(o, ClientClosed) for o in outcomes)

    def _on_tick(self, core: ClientCore) -> bool:
        with self._lock:
            outcomes = core.handle_timer(time.monotonic())
            claimed = self._claim(outcomes)
        self._handle(outcomes, claimed)
        return not any(isinstance(o, ClientClosed) for o in outcomes) and not (
            self._closing and core.connection.state.value in ("closed", "error")
        )

    def _take_output(self, core: ClientCore) -> bytes:
        with self._lock:
            return core.data_to_send()

    def _on_end(self, core: ClientCore, sock: socket.socket) -> None:
        outcomes: list[Any] = []
        with self._lock:
            with contextlib.suppress(HardLightError):
                outcomes = core.receive_data(b"", time.monotonic())
            claimed = self._claim(outcomes)
            if self._core is core:
                self._state = core.state
                self._sock = None
        self._handle(outcomes, claimed)
        with contextlib.suppress(OSError):
            sock.close()
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(ClientNotConnected("connection lost in the handshake"))
        self._fail_all(ClientNotConnected("connection lost"))
        self._maybe_reconnect()

    def _claim(self, outcomes: list[Any]) -> dict[int, Future[Any]]:
        """Under the lock: take the futures of the calls these outcomes end."""
        claimed = {}
        for outcome in outcomes:
            if isinstance(outcome, CallOutcome):
                future = self._pending.pop(outcome.call_id, None)
                if future is not None:
                    claimed[outcome.call_id] = future
        return claimed

    def _handle(self, outcomes: list[Any], claimed: dict[int, Future[Any]]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, CallOutcome):
                future = claimed.get(outcome.call_id)
                if future is None or future.done():
                    continue
                if outcome.error is not None:
                    future.set_exception(outcome.error)
                else:
                    future.set_result(outcome.value)
            elif isinstance(outcome, EventDelivered):
                try:
                    self._events.put_nowait(outcome)
                except queue.Full:
                    self.events_dropped += 1
            elif isinstance(outcome, ClientOpened):
                if self._opened is not None and not self._opened.done():
                    self._opened.set_result(None)
            elif isinstance(outcome, ClientClosed):
                error = outcome.exception()
                if self._opened is not None and not self._opened.done():
                    self._opened.set_exception(error)
                self._fail_all(ClientNotConnected(str(error)))

    def _fail_all(self, error: RpcError) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(type(error)(str(error)))

    def _maybe_reconnect(self) -> None:
        policy = self.config.reconnect
        if policy is None or self._closing:
            return

        def again() -> None:
            for delay in policy.delays():
                time.sleep(delay)
                if self._closing:
                    return
                try:
                    self.connect()
                    log.info("reconnected")
                    return
                except (OSError, HardLightError) as exc:
                    log.info("reconnect failed: %s", exc)

        threading.Thread(target=again, name="hardlight-reconnect", daemon=True).start()


def client_class(service: type[S]) -> type[Any]:
    """A blocking client class for ``service``."""

    def __init__(self: Client, config: ClientConfig | None = None) -> None:
        Client.__init__(self, service, config)

    return type(f"{service.__name__}Client", (Client,), {"__init__": __init__})
