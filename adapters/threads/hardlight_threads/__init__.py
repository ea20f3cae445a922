"""hardlight_threads: HardLight with blocking sockets and threads.

A blocking client usable from plain scripts (``client.get()`` returns the value) and a
threaded server. See ``docs/adapters.md``.
"""

from hardlight_core import ConnectionRefused
from hardlight_core import EventDelivered as Event

from ._client import Client, Subscription, client_class
from ._server import EventEmitter, Server, TopicNotifier

__all__ = [
    "Client",
    "ConnectionRefused",
    "Event",
    "EventEmitter",
    "Server",
    "Subscription",
    "TopicNotifier",
    "client_class",
]
