"""hardlight_asyncio: HardLight on asyncio transports and protocols.

See ``docs/adapters.md``: ``Server(config, Handler)``, ``Client(Service, config)``.
"""

from hardlight_core import ConnectionRefused
from hardlight_core._client_core import EventDelivered as Event

from ._client import Client, client_class
from ._server import EventEmitter, Server, TopicNotifier

__all__ = [
    "Client",
    "ConnectionRefused",
    "Event",
    "EventEmitter",
    "Server",
    "TopicNotifier",
    "client_class",
]
