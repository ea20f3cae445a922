"""What every adapter's ``Client`` has in common, whatever runs its I/O.

The core's :class:`~hardlight_core.ClientDriver` decides everything; this base holds the
client's face over it: one method per service method (``client.get()``, untyped),
``proxy`` (the same calls typed as the service), the state mirror, subscriptions,
``on_reconnect``, ``connected``. An adapter supplies ``call`` and how a method is made
(async or blocking), and the guard its driver needs (a lock for threads).
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar, overload

from hardlight_core import Channel, ClientDriver, EventDelivered
from hardlight_core._client_driver import service_proxy

from ._config import ClientConfig

__all__ = ["ClientBase"]

S = TypeVar("S")
T = TypeVar("T")


class ClientBase(Generic[S]):
    """The client of one service over a :class:`ClientDriver` (see the adapters)."""

    #: the proxy's methods return coroutines that block when run (threads)
    _blocking_proxy = False

    def __init__(
        self,
        service: type[S],
        config: ClientConfig | None,
        guard: AbstractContextManager[Any] | None = None,
    ) -> None:
        self.service = service
        self.config = config or ClientConfig()
        self._driver = ClientDriver(service, self.config)
        self.spec = self._driver.spec
        self._guard: AbstractContextManager[Any] = guard or contextlib.nullcontext()
        self._proxy: S | None = None
        for method in self.spec.methods:
            if not hasattr(type(self), method.name):
                setattr(self, method.name, self._make_method(method.name))

    def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Call ``method`` (each adapter's: a coroutine on asyncio and anyio, blocking on
        threads)."""
        raise NotImplementedError

    def _make_method(self, name: str) -> Any:
        """The untyped ``client.<name>(...)``: async, or blocking on threads."""
        call = self.call
        if self._blocking_proxy:

            def blocking(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
                return call(name, *args, timeout=timeout, **kwargs)

            blocking.__name__ = name
            return blocking

        async def method(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            return await call(name, *args, timeout=timeout, **kwargs)

        method.__name__ = name
        return method

    def __getattr__(self, name: str) -> Any:
        # only reached for names that are not there: the service's methods are set in
        # __init__; this tells type checkers that ``client.get()`` exists (as Any)
        raise AttributeError(
            f"{type(self).__name__} of {self.__dict__.get('service', '?')!r} has no "
            f"attribute {name!r}"
        )

    @property
    def proxy(self) -> S:
        """The service's methods on this client, typed as the service
        (``await client.proxy.get("a")``; on threads ``run(client.proxy.get("a"))``)."""
        if self._proxy is None:
            self._proxy = service_proxy(self.service, self, blocking=self._blocking_proxy)
        return self._proxy

    def _set_reconnect_hook(self, hook: Any) -> None:
        """Each adapter's ``on_reconnect`` (typed for its kind of hook): ``hook(client)``
        runs after each automatic reconnect, before any other caller's call is sent
        (calls made meanwhile wait until it returns; their timeouts run)."""
        with self._guard:
            self._driver.reconnect_hook = hook

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        return self._driver.connected

    @property
    def events_dropped(self) -> int:
        """Events refused because a subscriber's queue was full."""
        return self._driver.events_dropped

    @overload
    def state(self) -> Any: ...
    @overload
    def state(self, state_type: type[T]) -> T: ...

    def state(self, state_type: type[T] | None = None) -> Any:
        """The mirror of this connection's server-side state; ``state(KvState)`` checks it
        is a ``KvState`` and is typed so."""
        with self._guard:
            if state_type is not None:
                return self._driver.typed_state(state_type)
            return self._driver.state

    def _subscription_channel(self) -> Channel[EventDelivered]:
        with self._guard:
            return self._driver.subscribe()

    def _unsubscribe(self, channel: Channel[EventDelivered]) -> None:
        """A subscription was closed or dropped: it stops receiving."""
        with self._guard:
            self._driver.unsubscribe(channel)
