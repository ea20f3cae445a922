"""hardlight_asyncio: HardLight on asyncio transports and protocols.

See ``docs/adapters.md``: ``Server(config, Handler)``, ``Client(Service, config)``,
``async with connect(Service, config) as proxy:`` (calls typed as the service).
"""

from hardlight_core import CallInfo, ConnectionInfo, ConnectionRefused, ServerHooks
from hardlight_core import EventDelivered as Event
from hardlight_core._client_driver import with_timeout

from ._client import Client, ReconnectHook, Subscription, client_class, client_of, connect
from ._nats import BusUnavailable, NatsBus
from ._server import EventEmitter, Server, TopicNotifier
from ._workers import WorkerBus, WorkerHub

__all__ = [
    "CallInfo",
    "ConnectionInfo",
    "BusUnavailable",
    "Client",
    "ConnectionRefused",
    "Event",
    "EventEmitter",
    "NatsBus",
    "ReconnectHook",
    "Server",
    "ServerHooks",
    "Subscription",
    "TopicNotifier",
    "WorkerBus",
    "WorkerHub",
    "client_class",
    "client_of",
    "connect",
    "with_timeout",
]
