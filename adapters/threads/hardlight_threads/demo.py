"""The reference's README example with blocking threads: ``python -m hardlight_threads.demo``."""

from __future__ import annotations

import logging
import sys
import threading
import time

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


def run() -> int:
    """Server and client on loopback over TLS; 0 when everything was seen."""
    config = ServerConfig.self_signed("localhost:0")
    assert config.fingerprint is not None
    with Server(config, CounterHandler) as server:
        emitter = server.event_emitter(CounterEvent)
        notifier = server.topic_notifier()

        def notify() -> None:
            for change in notifier:
                log.info("[server] topic %s: %s", type(change).__name__, change.topic)
                if isinstance(change, TopicCreated):
                    emitter.emit(change.topic, ServerSentTest())

        threading.Thread(target=notify, daemon=True).start()
        with Client(
            Counter, ClientConfig.pinned(f"localhost:{server.port}", config.fingerprint)
        ) as client:
            events = client.subscribe()
            client.new_counter()
            log.info("[client] subscribed to topic %s", client.state().topic)
            client.increment(1)
            client.decrement(1)
            seen = []
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline and not (
                Incremented(1, 0) in seen and Decremented(0, 1) in seen
            ):
                event = events.get(0.1)
                if event is not None:
                    value = event.decode(CounterEvent)
                    log.info("[subscription] event on %s: %s", event.topic, value)
                    seen.append(value)
            counter = client.get()
            log.info("[client] Counter: %d", counter)
            log.info("[client] %s", client.state())
            ok = counter == 0 and Incremented(1, 0) in seen and Decremented(0, 1) in seen
    return 0 if ok else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)5s %(message)s")
    sys.exit(run())
