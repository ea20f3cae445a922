"""The reference's README example, in Python: ``python -m hardlight_asyncio.demo``.

A counter server with a topic notifier that greets every new topic with
``ServerSentTest``, and a client that subscribes, creates a counter, waits for
the state mirror's topic, increments and decrements it, then prints the counter
and the state. All on loopback over TLS (self-signed, pinned by fingerprint).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from hardlight_apps.counter import (
    Counter,
    CounterEvent,
    CounterHandler,
    Decremented,
    Incremented,
    ServerSentTest,
)
from hardlight_core import Topic, TopicCreated
from hardlight_support import ClientConfig, ServerConfig

from ._client import Client
from ._server import Server

log = logging.getLogger("demo")

WAIT = 10.0  # every wait in the demo is bounded


async def run(port: int = 0) -> int:
    """Run server and client; returns the exit status (0 when everything was seen)."""
    config = ServerConfig.self_signed(f"localhost:{port}")
    server = Server(config, CounterHandler)
    emitter = server.event_emitter(CounterEvent)
    notifier = server.topic_notifier()

    async def notify() -> None:
        async for change in notifier:
            if isinstance(change, TopicCreated):
                log.info("[server] Topic created: %s", change.topic)
                await emitter.emit(change.topic, ServerSentTest())
            else:
                log.info("[server] Topic removed: %s", change.topic)

    await server.start()
    notifier_task = asyncio.create_task(notify())
    log.info(
        "[server] listening on %s:%d (TLS, fingerprint %s)", *server.address, config.fingerprint
    )
    seen: list[object] = []
    try:
        assert config.fingerprint is not None
        client = Client(
            Counter, ClientConfig.pinned(f"localhost:{server.port}", config.fingerprint)
        )
        await client.connect()
        log.info("[client] connected")
        got_all = asyncio.Event()

        async def receive() -> None:
            async for event in client.subscribe():
                value = event.decode(CounterEvent)
                log.info("[subscription] Received event on topic %s: %s", event.topic, value)
                seen.append(value)
                if sum(isinstance(v, (Incremented, Decremented)) for v in seen) == 2:
                    got_all.set()

        receiver = asyncio.create_task(receive())
        await client.new_counter()
        start = time.perf_counter()
        topic: Topic = client.state().topic
        while not topic.inner:  # ours arrives before the response; kept for the reference's shape
            await asyncio.sleep(0.001)
            topic = client.state().topic
        log.info(
            "[client] Received state update for topic after RPC response in %.1f us",
            (time.perf_counter() - start) * 1e6,
        )
        log.info("[client] Subscribed to topic %s", topic)
        await client.increment(1)
        await client.decrement(1)
        await asyncio.wait_for(got_all.wait(), WAIT)
        counter = await client.get()
        log.info("[client] Counter: %d", counter)
        log.info("[client] %s", client.state())
        await client.disconnect()
        receiver.cancel()
    finally:
        await server.stop(grace=1.0)
        notifier_task.cancel()
    ok = (
        counter == 0
        and Incremented(to=1, from_=0) in seen
        and Decremented(to=0, from_=1) in seen
        and client.state().counter == 0
    )
    if not any(isinstance(v, ServerSentTest) for v in seen):
        log.info("[client] (ServerSentTest raced the subscription; the reference loses it too)")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)5s %(message)s")
    return asyncio.run(asyncio.wait_for(run(args.port), 60))


if __name__ == "__main__":
    sys.exit(main())
