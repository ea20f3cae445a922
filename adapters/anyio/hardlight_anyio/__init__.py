"""hardlight_anyio: HardLight on anyio, so on both the asyncio and the trio backends.

See ``docs/adapters.md``. Servers run inside ``async with Server(...) as server:`` (or
``await server.serve_forever()``); clients connect and disconnect from one task or use
``async with Client(...) as client:``.
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
