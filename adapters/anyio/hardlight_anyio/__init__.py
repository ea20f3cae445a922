"""hardlight_anyio: HardLight on anyio, so on both the asyncio and the trio backends.

See ``docs/adapters.md``. Servers run inside ``async with Server(...) as server:`` (or
``await server.serve_forever()``); clients connect and disconnect from one task or use
``async with Client(...) as client:``.
"""

from hardlight_core import CallInfo, ConnectionInfo, ConnectionRefused, ServerHooks
from hardlight_core import EventDelivered as Event
from hardlight_core._client_driver import with_timeout

from ._client import Client, ReconnectHook, Subscription, client_class, client_of, connect
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
    "with_timeout",
]
