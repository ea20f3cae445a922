"""hardlight_asyncio: HardLight on asyncio transports and protocols.

See ``docs/adapters.md``: ``Server(config, Handler)``, ``Client(Service, config)``.
"""

from hardlight_core import ConnectionRefused
from hardlight_core import EventDelivered as Event

from ._client import Client, Subscription, client_class
from ._nats import BusUnavailable, NatsBus
from ._server import EventEmitter, Server, TopicNotifier

__all__ = [
    "BusUnavailable",
    "Client",
    "ConnectionRefused",
    "Event",
    "EventEmitter",
    "NatsBus",
    "Server",
    "Subscription",
    "TopicNotifier",
    "client_class",
]
