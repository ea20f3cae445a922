"""hardlight_threads: HardLight with blocking sockets and threads.

A blocking client usable from plain scripts (``client.get()`` returns the value) and a
threaded server. See ``docs/adapters.md``.
"""

from hardlight_core import CallInfo, ConnectionInfo, ConnectionRefused, ServerHooks
from hardlight_core import EventDelivered as Event
from hardlight_core._client_driver import with_timeout

from ._client import (
    Client,
    ReconnectHook,
    Subscription,
    client_class,
    client_of,
    connect,
    run,
)
from ._server import EventEmitter, Server, TopicNotifier

__all__ = [
    "CallInfo",
    "ConnectionInfo",
    "Client",
    "ConnectionRefused",
    "Event",
    "EventEmitter",
    "ReconnectHook",
    "Server",
    "ServerHooks",
    "Subscription",
    "TopicNotifier",
    "client_class",
    "client_of",
    "connect",
    "run",
    "with_timeout",
]
