"""hardlight_support: what the adapters share that is not a protocol decision.

The core (``hardlight_core``) decides everything and does no I/O; the adapters
(asyncio, anyio, threads, ASGI) move bytes. What two adapters need beyond that
(waiting on the core's channels, ...) lives here, once.
"""

from ._blocking import BlockingChannelReader
from ._channels import ChannelReader

__all__ = ["BlockingChannelReader", "ChannelReader"]
