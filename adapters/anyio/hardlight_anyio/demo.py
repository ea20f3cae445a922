"""The reference's README example on anyio: ``python -m hardlight_anyio.demo [--backend trio]``."""

from __future__ import annotations

import argparse
import logging
import sys

import anyio

from hardlight_apps.counter import (
    Counter,
    CounterEvent,
    CounterHandler,
    Decremented,
    Incremented,
    ServerSentTest,
)
from hardlight_core import TopicCreated
from hardlight_support import ClientConfig, ServerConfig

from ._client import Client
from ._server import Server

log = logging.getLogger("demo")
WAIT = 10.0


async def run() -> int:
    """Server and client on loopback over TLS; 0 when everything was seen."""
    config = ServerConfig.self_signed("localhost:0")
    assert config.fingerprint is not None
    seen: list[object] = []
    async with Server(config, CounterHandler) as server, anyio.create_task_group() as tg:
        emitter = server.event_emitter(CounterEvent)
        notifier = server.topic_notifier()

        async def notify() -> None:
            async for change in notifier:
                log.info("[server] topic %s: %s", type(change).__name__, change.topic)
                if isinstance(change, TopicCreated):
                    await emitter.emit(change.topic, ServerSentTest())

        tg.start_soon(notify)
        pinned = ClientConfig.pinned(f"localhost:{server.port}", config.fingerprint)
        async with Client(Counter, pinned) as client:
            got_both = anyio.Event()

            async def receive() -> None:
                async for event in client.subscribe():
                    value = event.decode(CounterEvent)
                    log.info("[subscription] event on %s: %s", event.topic, value)
                    seen.append(value)
                    if Incremented(1, 0) in seen and Decremented(0, 1) in seen:
                        got_both.set()

            tg.start_soon(receive)
            await client.new_counter()
            log.info("[client] subscribed to topic %s", client.state().topic)
            await client.increment(1)
            await client.decrement(1)
            with anyio.fail_after(WAIT):
                await got_both.wait()
            counter = await client.get()
            log.info("[client] Counter: %d", counter)
            log.info("[client] %s", client.state())
        tg.cancel_scope.cancel()
    return 0 if counter == 0 else 1


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)5s %(message)s")
    return anyio.run(run, backend=args.backend)


if __name__ == "__main__":
    sys.exit(main())
