"""The client driver: one client of a service across its connections, without I/O.

Every decision a HardLight client takes lives here; an adapter supplies only the
socket (connect, read, write), a *waiter* per call (anything with ``done()``,
``set_result()`` and ``set_exception()``: an asyncio or concurrent future), a wake-up
for event subscribers and one timer:

* :meth:`ClientDriver.new_connection` before each connect, feed what the socket
  reads to :meth:`ClientDriver.receive_data`, write :meth:`ClientDriver.data_to_send`,
  report the socket's end with :meth:`ClientDriver.connection_lost`;
* run :meth:`ClientDriver.handle_timer` at :meth:`ClientDriver.get_timer` (the
  connection's deadlines and every call's timeout: one timer for all);
* :meth:`ClientDriver.start_call` / :meth:`ClientDriver.cancel_call` for calls;
* :meth:`ClientDriver.subscribe` for each event iterator (each gets every event);
* :meth:`ClientDriver.reconnect_delays` after a drop, when :attr:`should_reconnect`;
  after a reconnect, run the user's :attr:`ClientDriver.reconnect_hook` between
  :meth:`ClientDriver.enter_hook` and :meth:`ClientDriver.leave_hook` (calls made by
  anyone else meanwhile are held in the driver and sent when the hook returns).

It also builds the typed proxies of the adapters (:func:`service_proxy`): an instance
of a generated subclass of the service whose methods call ``client.call(...)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from ._calls import MAX_CALLS_IN_FLIGHT
from ._channel import Channel
from ._client_core import (
    CallOutcome,
    ClientClosed,
    ClientCore,
    ClientOpened,
    ClientOutcome,
    EventDelivered,
)
from ._config import ClientSettings
from ._errors import (
    CallTimeout,
    ClientEncodeError,
    ClientNotConnected,
    ConnectError,
    EncodeError,
    HardLightError,
    LocalProtocolError,
    TooManyCallsInFlight,
)
from ._service import MethodSpec, ServiceSpec

__all__ = [
    "ClientDriver",
    "ClientPhase",
    "Waiter",
    "proxy_client",
    "service_proxy",
    "with_timeout",
]

P = TypeVar("P")
T = TypeVar("T")

#: the driver whose reconnect hook runs in this context (task, thread): its calls pass the gate
_IN_HOOK: contextvars.ContextVar[ClientDriver | None] = contextvars.ContextVar(
    "hardlight_reconnect_hook", default=None
)

log = logging.getLogger("hardlight")

EVENT_QUEUE_SIZE = 10_000


class Waiter(Protocol):
    """What a pending call (or the handshake) resolves: an asyncio or concurrent future."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class ClientPhase(enum.Enum):
    """Where the client is between connections."""

    IDLE = "idle"  # never connected, or disconnected by the user
    CONNECTING = "connecting"  # socket or handshake under way
    OPEN = "open"  # calls flow
    LOST = "lost"  # the connection dropped (reconnecting, if a policy says so)


_PHASES: dict[tuple[ClientPhase, str], ClientPhase] = {
    (ClientPhase.IDLE, "connect"): ClientPhase.CONNECTING,
    (ClientPhase.LOST, "connect"): ClientPhase.CONNECTING,
    (ClientPhase.CONNECTING, "connect"): ClientPhase.CONNECTING,
    (ClientPhase.CONNECTING, "opened"): ClientPhase.OPEN,
    (ClientPhase.CONNECTING, "lost"): ClientPhase.LOST,
    (ClientPhase.OPEN, "lost"): ClientPhase.LOST,
    (ClientPhase.LOST, "lost"): ClientPhase.LOST,
    (ClientPhase.IDLE, "lost"): ClientPhase.IDLE,
    (ClientPhase.IDLE, "disconnect"): ClientPhase.IDLE,
    (ClientPhase.CONNECTING, "disconnect"): ClientPhase.IDLE,
    (ClientPhase.OPEN, "disconnect"): ClientPhase.IDLE,
    (ClientPhase.LOST, "disconnect"): ClientPhase.IDLE,
}


class _Pending:
    __slots__ = ("args", "deadline", "method", "timeout", "waiter")

    def __init__(
        self,
        waiter: Waiter,
        method: str,
        deadline: float | None,
        timeout: float | None,
        args: tuple[Any, ...] = (),
    ):
        self.waiter = waiter
        self.method = method
        self.deadline = deadline
        self.timeout = timeout
        self.args = args  # only for calls held while a reconnect hook runs


class ClientDriver:
    """Calls, events, the state mirror and reconnection for one client of ``service``."""

    def __init__(self, service: type[Any], config: ClientSettings) -> None:
        self.service = service
        self.config = config
        self.spec = ServiceSpec.of(service)
        self.phase = ClientPhase.IDLE
        self.core: ClientCore | None = None
        #: events refused because a subscriber's queue was full
        self.events_dropped = 0
        self._pending: dict[int, _Pending] = {}
        self._opened: Waiter | None = None
        self._subscribers: list[Channel[EventDelivered]] = []
        # events that arrive while nobody subscribes wait here for the first subscriber
        self._backlog: Channel[EventDelivered] = Channel(EVENT_QUEUE_SIZE, "client event queue")
        self._last_state: Any = None
        self._earliest: float | None = None
        #: the user's reconnect hook (the adapter runs it; the driver only gates calls)
        self.reconnect_hook: Any = None
        self._reconnecting = False  # inside reconnect_delays(): an open is a reconnect
        self._gated = False  # a reconnect hook runs: other callers' calls are held
        self._held: list[_Pending] = []

    # -- connection ------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` this client connects to."""
        host, port = self.config.host_port
        return f"{host}:{port}"

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        return self.phase is ClientPhase.OPEN

    @property
    def should_reconnect(self) -> bool:
        """The connection dropped and the policy asks to connect again."""
        return self.phase is ClientPhase.LOST and self.config.reconnect is not None

    def new_connection(self, opened: Waiter, now: float | None = None) -> ClientCore:
        """The engine of a new connection; ``opened`` resolves when its handshake ends.

        ``now`` starts its handshake timeout (``Limits.handshake_timeout``)."""
        self._move("connect")
        config = self.config
        host, port = config.host_port
        self.core = ClientCore(
            self.service,
            f"{host}:{port}",
            compression_level=config.compression_level,
            limits=config.limits,
            # ClientConfig(path=, headers=); other settings objects may lack them
            path=getattr(config, "path", "/"),
            extra_headers=tuple(getattr(config, "upgrade_headers", ())),
            now=now,
        )
        self._opened = opened
        return self.core

    def connect_failed(self, error: BaseException) -> BaseException:
        """What a failed connect should raise: network failures (refused TCP, TLS, name
        resolution, the connect timeout) as :class:`ConnectError` with the address; every
        other error (``hardlight`` errors, a bug in the caller's code) as it is."""
        if self.phase is ClientPhase.CONNECTING:
            self._move("lost")
        self._open_gate(ClientNotConnected(f"connect to {self.address} failed"))
        self.core = None
        if isinstance(error, HardLightError):
            return error
        if isinstance(error, TimeoutError):
            timeout = self.config.connect_timeout
            return ConnectError(self.address, f"no connection within {timeout} s")
        if isinstance(error, (OSError, EOFError)):  # ssl.SSLError is an OSError
            return ConnectError(self.address, error)
        return error

    def receive_data(self, data: bytes, now: float) -> bool:
        """Feed what the socket read (b"" at EOF); False once the connection is over."""
        core = self.core
        if core is None:
            return False
        return self._handle(core.receive_data(data, now))

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket."""
        return self.core.data_to_send() if self.core is not None else b""

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should run next (connection deadlines, call timeouts)."""
        core_deadline = self.core.get_timer() if self.core is not None else None
        earliest = self._earliest
        if core_deadline is None:
            return earliest
        if earliest is None:
            return core_deadline
        return min(core_deadline, earliest)

    def handle_timer(self, now: float) -> bool:
        """Expire calls past their timeout (CallTimeout) and let the connection's deadlines
        act; False once the connection is over."""
        self._expire_calls(now)
        if self.core is None:
            return False
        return self._handle(self.core.handle_timer(now))

    def connection_lost(self, now: float, error: BaseException | None = None) -> None:
        """The socket is gone: pending calls fail, the state mirror is kept."""
        core = self.core
        if core is not None:
            try:
                self._handle(core.receive_data(b"", now))
            except Exception:
                log.debug("EOF after the connection broke", exc_info=True)
            self._last_state = core.state
        if error is not None:
            log.debug("connection to %s lost: %s", self.address, error)
        self._fail_all(ClientNotConnected(f"connection to {self.address} lost"))
        self._open_failed(ClientNotConnected(f"connection to {self.address} lost in the handshake"))
        self._move("lost")

    def disconnect(self) -> None:
        """The user closes the client: start the close handshake; no reconnect."""
        self._move("disconnect")
        self._reconnecting = False
        self._open_gate(ClientNotConnected("client disconnected"))
        core = self.core
        if core is not None and core.connection.state.value == "open":
            core.close()

    def disconnected(self) -> None:
        """The socket of a user-closed client is gone (or given up on)."""
        if self.core is not None:
            self._last_state = self.core.state
        self._fail_all(ClientNotConnected("client disconnected"))
        self._open_failed(ClientNotConnected("client disconnected"))

    def reconnect_delays(self) -> Iterator[float]:
        """The waits before each reconnect attempt; stop iterating when one succeeds or the
        user disconnects (logs each failure and the giving up)."""
        policy = self.config.reconnect
        if policy is None:
            return
        attempt = 0
        try:
            for attempt, delay in enumerate(policy.delays(), 1):
                if self.phase is not ClientPhase.LOST:
                    return
                self._reconnecting = True
                yield delay
                if self.connected:  # the phase changed while the caller waited and connected
                    log.info("reconnected to %s (attempt %d)", self.address, attempt)
                    return
            if self.phase is ClientPhase.LOST:
                log.warning(
                    "giving up reconnecting to %s after %d attempts", self.address, attempt
                )
        finally:
            self._reconnecting = False

    def reconnect_failed(self, error: BaseException) -> None:
        """One reconnect attempt failed (logged)."""
        log.info("reconnect to %s failed: %s", self.address, error)

    # -- the reconnect hook --------------------------------------------------------------------

    @property
    def hook_pending(self) -> bool:
        """A reconnect just opened and :attr:`reconnect_hook` must run: calls from other
        callers are held until :meth:`leave_hook`."""
        return self._gated

    def enter_hook(self) -> contextvars.Token[ClientDriver | None]:
        """The adapter starts running the reconnect hook in the current context (task or
        thread): calls made from this context (and tasks it starts) pass the gate."""
        return _IN_HOOK.set(self)

    def leave_hook(self, token: contextvars.Token[ClientDriver | None] | None = None) -> None:
        """The reconnect hook returned (or raised): the held calls are started, in the order
        they were made (write :meth:`data_to_send` next)."""
        if token is not None:
            # (ValueError, RuntimeError: another context, or already reset)
            with contextlib.suppress(ValueError, RuntimeError):
                _IN_HOOK.reset(token)
        self._open_gate()

    # -- calls -------------------------------------------------------------------------------

    def start_call(
        self,
        method: str,
        args: tuple[Any, ...],
        waiter: Waiter,
        now: float,
        timeout: float | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> int:
        """Encode and queue a call; ``waiter`` gets its result. Returns the call id.

        ``kwargs`` are mapped to their positions (the wire is positional) and declared
        defaults filled in. ``timeout`` None means the config's ``call_timeout``. Raises
        (nothing is sent) ClientNotConnected, ClientEncodeError or TooManyCallsInFlight.
        """
        if kwargs:
            try:
                args = self.spec.bind_args(method, args, kwargs)
            except EncodeError as exc:
                raise ClientEncodeError(str(exc)) from None
        core = self.core
        if core is None or self.phase is not ClientPhase.OPEN:
            raise ClientNotConnected(f"not connected to {self.address}")
        timeout = self.config.call_timeout if timeout is None else timeout
        deadline = None if timeout is None else now + timeout
        if self._gated and _IN_HOOK.get() is not self:
            # a reconnect hook runs: hold the call (its timeout runs) until the hook returns
            try:  # bad arguments fail now, as they would unheld
                self.spec.encode_call(method, *args)
            except Exception as exc:
                raise ClientEncodeError(f"{method}{args!r}: {exc}") from exc
            if len(self._held) + core.connection.calls_in_flight >= MAX_CALLS_IN_FLIGHT:
                # the held calls go out when the hook returns: 256 is the wire's bound
                raise TooManyCallsInFlight(
                    f"{MAX_CALLS_IN_FLIGHT} calls already wait for the reconnect hook or an answer"
                )
            self._held.append(_Pending(waiter, method, deadline, timeout, args))
            self._note_deadline(deadline)
            return -1
        call_id = core.start_call(method, args)
        self._pending[call_id] = _Pending(waiter, method, deadline, timeout)
        self._note_deadline(deadline)
        return call_id

    def _note_deadline(self, deadline: float | None) -> None:
        if deadline is not None and (self._earliest is None or deadline < self._earliest):
            self._earliest = deadline

    def cancel_call(self, call_id: int, waiter: Waiter) -> None:
        """The caller stopped waiting (cancelled): drop the late answer when it comes."""
        for held in self._held:
            if held.waiter is waiter:
                self._held.remove(held)
                return
        if call_id < 0:  # a call that was held, then started: find it by its waiter
            call_id = next((i for i, p in self._pending.items() if p.waiter is waiter), -1)
        pending = self._pending.get(call_id)
        if pending is not None and pending.waiter is waiter:
            del self._pending[call_id]
            if self.core is not None:
                self.core.abandon_call(call_id)

    @property
    def calls_pending(self) -> int:
        """Calls waiting for an answer (held ones included)."""
        return len(self._pending) + len(self._held)

    def _expire_calls(self, now: float) -> None:
        earliest = self._earliest
        if earliest is None or now < earliest:
            return
        next_deadline: float | None = None
        for call_id, pending in list(self._pending.items()):
            deadline = pending.deadline
            if deadline is None:
                continue
            if deadline <= now:
                del self._pending[call_id]
                if self.core is not None:
                    self.core.abandon_call(call_id)
                _resolve(pending.waiter, error=self._timed_out(pending))
            elif next_deadline is None or deadline < next_deadline:
                next_deadline = deadline
        for held in list(self._held):
            deadline = held.deadline
            if deadline is None:
                continue
            if deadline <= now:
                self._held.remove(held)
                why = " (held while the reconnect hook ran)"
                _resolve(held.waiter, error=self._timed_out(held, why))
            elif next_deadline is None or deadline < next_deadline:
                next_deadline = deadline
        self._earliest = next_deadline

    def _timed_out(self, pending: _Pending, why: str = "") -> CallTimeout:
        return CallTimeout(
            f"{pending.method}: no answer from {self.address} within {pending.timeout} s{why}"
        )

    # -- events and state --------------------------------------------------------------------

    def subscribe(self) -> Channel[EventDelivered]:
        """A new subscriber's queue (bounded): it gets every event from now on, and the
        ones that arrived while nobody subscribed. Set its ``on_put`` to wake the reader."""
        channel: Channel[EventDelivered] = Channel(EVENT_QUEUE_SIZE, "subscriber queue")
        if not self._subscribers:
            while (event := self._backlog.get()) is not None:
                channel.put(event)
        self._subscribers.append(channel)
        return channel

    def unsubscribe(self, channel: Channel[EventDelivered]) -> None:
        """A subscriber is gone."""
        if channel in self._subscribers:
            self._subscribers.remove(channel)
        channel.close()

    def close_subscriptions(self) -> None:
        """The client is closed for good: every subscriber's iterator ends."""
        for channel in self._subscribers:
            channel.close()
        self._subscribers.clear()

    @property
    def state(self) -> Any:
        """The state mirror (kept after a drop; a new connection starts from the default)."""
        core = self.core
        return core.state if core is not None else self._last_state

    def typed_state(self, state_type: type[T]) -> T:
        """The state mirror, checked to be a ``state_type`` (TypeError if not, e.g. when the
        service declares no state or another one)."""
        value = self.state
        if not isinstance(value, state_type):
            raise TypeError(
                f"the state of {self.spec.service.__name__} is {type(value).__name__}, "
                f"not {state_type.__name__}"
            )
        return value

    # -- internals ---------------------------------------------------------------------------

    def _move(self, what: str) -> None:
        try:
            self.phase = _PHASES[self.phase, what]
        except KeyError:
            raise LocalProtocolError(f"cannot {what} while {self.phase.value}") from None

    def _handle(self, outcomes: list[ClientOutcome]) -> bool:
        alive = True
        for outcome in outcomes:
            if isinstance(outcome, CallOutcome):
                pending = self._pending.pop(outcome.call_id, None)
                if pending is not None:
                    if outcome.error is not None:
                        _resolve(pending.waiter, error=outcome.error)
                    else:
                        _resolve(pending.waiter, value=outcome.value)
            elif isinstance(outcome, EventDelivered):
                self._deliver(outcome)
            elif isinstance(outcome, ClientOpened):
                if self.phase is ClientPhase.CONNECTING:
                    self._move("opened")
                    if self._reconnecting and self.reconnect_hook is not None:
                        self._gated = True  # until the adapter has run the hook
                    opened, self._opened = self._opened, None
                    if opened is not None:
                        _resolve(opened)
            elif isinstance(outcome, ClientClosed):
                alive = False
                error = outcome.exception()
                self._open_failed(error)
                self._fail_all(ClientNotConnected(f"{self.address}: {error}"))
        return alive

    def _deliver(self, event: EventDelivered) -> None:
        subscribers = self._subscribers
        if not subscribers:
            if not self._backlog.put(event):
                self.events_dropped += 1
            return
        for channel in subscribers:
            if not channel.put(event):
                self.events_dropped += 1

    def _open_failed(self, error: BaseException) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            _resolve(opened, error=error)

    def _fail_all(self, error: ClientNotConnected) -> None:
        pending, self._pending = self._pending, {}
        self._earliest = None
        for entry in pending.values():
            _resolve(entry.waiter, error=type(error)(str(error)))
        self._open_gate(error)

    def _open_gate(self, error: ClientNotConnected | None = None) -> None:
        """End the hold: start the held calls, or fail them with ``error``."""
        self._gated = False
        held, self._held = self._held, []
        for entry in held:
            if entry.waiter.done():
                continue
            if error is not None:
                _resolve(entry.waiter, error=type(error)(str(error)))
                continue
            core = self.core
            if core is None or self.phase is not ClientPhase.OPEN:
                _resolve(entry.waiter, error=ClientNotConnected(f"not connected to {self.address}"))
                continue
            try:
                call_id = core.start_call(entry.method, entry.args)
            except HardLightError as exc:  # ClientEncodeError, TooManyCallsInFlight
                _resolve(entry.waiter, error=exc)
                continue
            entry.args = ()
            self._pending[call_id] = entry
            self._note_deadline(entry.deadline)


def _resolve(waiter: Waiter, value: Any = None, error: BaseException | None = None) -> None:
    if waiter.done():
        return
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(value)


# -- typed proxies ----------------------------------------------------------------------------


class _Proxy:
    """Base of the generated proxy classes (mixed into a subclass of the service)."""

    _hl_client: Any
    _hl_timeout: float | None
    _hl_service: type[Any]

    def __repr__(self) -> str:
        timeout = "" if self._hl_timeout is None else f", timeout={self._hl_timeout}"
        return f"<{self._hl_service.__name__} proxy of {self._hl_client!r}{timeout}>"


_PROXY_CLASSES: dict[tuple[type[Any], bool], type[Any]] = {}


def service_proxy(
    service: type[P], client: Any, *, blocking: bool = False, timeout: float | None = None
) -> P:
    """A ``service``-typed proxy of ``client``: ``await proxy.get(key)`` is
    ``await client.call("get", key, timeout=timeout)``.

    The proxy is an instance of a generated subclass of ``service`` (so a type checker
    checks its calls against the service's signatures). With ``blocking`` (the threads
    adapter) each method is still ``async def`` (as declared) but never suspends: its
    coroutine makes the blocking ``client.call`` when first resumed (run it with
    ``hardlight_threads.run(proxy.get(key))``).
    """
    cls = _PROXY_CLASSES.get((service, blocking))
    if cls is None:
        spec = ServiceSpec.of(service)
        namespace: dict[str, Any] = {
            m.name: _proxy_method(m, blocking) for m in spec.methods
        }
        namespace["__module__"] = service.__module__
        name = f"{service.__name__}{'Blocking' if blocking else ''}Proxy"
        cls = _PROXY_CLASSES[service, blocking] = type(name, (_Proxy, service), namespace)
    proxy: Any = object.__new__(cls)
    proxy._hl_client = client
    proxy._hl_timeout = timeout
    proxy._hl_service = service
    result: P = proxy
    return result


def _proxy_method(method: MethodSpec, blocking: bool) -> Callable[..., Any]:
    name, arg_names = method.name, method.arg_names

    def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        if not kwargs:
            return args
        values = list(args)
        for arg_name in arg_names[len(args) :]:
            if arg_name not in kwargs:
                raise TypeError(f"{name}() missing argument {arg_name!r}")
            values.append(kwargs.pop(arg_name))
        if kwargs:
            raise TypeError(f"{name}() got unexpected arguments {sorted(kwargs)}")
        return tuple(values)

    if blocking:

        async def call(self: _Proxy, *args: Any, **kwargs: Any) -> Any:
            return self._hl_client.call(name, *arguments(args, kwargs), timeout=self._hl_timeout)

    else:

        async def call(self: _Proxy, *args: Any, **kwargs: Any) -> Any:
            return await self._hl_client.call(
                name, *arguments(args, kwargs), timeout=self._hl_timeout
            )

    call.__name__ = call.__qualname__ = name
    return call


def with_timeout(proxy: P, timeout: float | None) -> P:
    """The same proxy with another per-call timeout (seconds; None: the config's
    ``call_timeout``): ``await with_timeout(kv, 2.0).get("a")``."""
    if not isinstance(proxy, _Proxy):
        raise TypeError(f"with_timeout() takes a client proxy, not {type(proxy).__name__}")
    copy: Any = object.__new__(type(proxy))
    copy._hl_client = proxy._hl_client
    copy._hl_timeout = timeout
    copy._hl_service = proxy._hl_service
    result: P = copy
    return result


def proxy_client(proxy: object) -> Any:
    """The client behind a proxy made by :func:`service_proxy` (TypeError if none)."""
    if not isinstance(proxy, _Proxy):
        raise TypeError(f"not a client proxy: {type(proxy).__name__}")
    return proxy._hl_client
