"""Fan-out on the asyncio server: one event per subscriber, in order, at every compression level.

The server frames each event once per compression level and writes every dirty
connection from one loop callback; these tests check that nothing is lost or
reordered by that, and that a subscriber that stops reading is cut off alone.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from hardlight_apps import chat
from hardlight_asyncio import Client, Server
from hardlight_core import Limits
from hardlight_support import ClientConfig, ClientTLS, ServerConfig, ServerTLS

TLS = ServerTLS.self_signed("localhost", "127.0.0.1")


def _config(port: int, level: int) -> ClientConfig:
    return ClientConfig(
        address=f"localhost:{port}", tls=ClientTLS(ca_pem=TLS.cert_pem), compression_level=level
    )


async def _said(client: Client, count: int) -> list[str]:
    texts: list[str] = []
    async for event in client.subscribe():
        value = event.decode(chat.ChatEvent)
        if isinstance(value, chat.Said):
            texts.append(value.message.text)
            if len(texts) == count:
                return texts
    return texts


def test_every_subscriber_gets_every_message_in_the_same_order() -> None:
    async def main() -> None:
        config = ServerConfig(host="127.0.0.1", port=0, tls=TLS)
        async with Server(config, chat.ChatHandler) as server:
            clients = []
            for i in range(24):
                client = Client(chat.Chat, _config(server.port, (0, 6, 9)[i % 3]))
                await client.connect()
                await client.join("room", f"u{i}")
                clients.append(client)
            readers = [asyncio.create_task(_said(c, 40)) for c in clients]
            sender = clients[0]
            await asyncio.gather(*(sender.send_message(f"m{n}") for n in range(40)))
            seen = await asyncio.wait_for(asyncio.gather(*readers), 30)
            assert sorted(seen[0], key=lambda t: int(t[1:])) == [f"m{n}" for n in range(40)]
            assert all(texts == seen[0] for texts in seen)  # one order for everyone
            for client in clients:
                await client.disconnect()

    asyncio.run(main())


def test_a_subscriber_that_stops_reading_is_closed_and_the_others_carry_on() -> None:
    async def main() -> None:
        limits = Limits(max_outgoing_bytes=64 * 1024)
        config = ServerConfig(host="127.0.0.1", port=0, tls=TLS, limits=limits)
        async with Server(config, chat.ChatHandler) as server:
            reader = Client(chat.Chat, _config(server.port, 0))
            stalled = Client(chat.Chat, _config(server.port, 0))
            for i, client in enumerate((reader, stalled)):
                await client.connect()
                await client.join("room", f"u{i}")
            stalled_protocol: Any = stalled._protocol
            stalled_protocol.transport.pause_reading()  # never reads again
            sock = stalled_protocol.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up sooner
            count = 1500
            texts = asyncio.create_task(_said(reader, count))
            big = "x" * 8000
            for n in range(count):
                await reader.send_message(f"{n}{big}")
            got = await asyncio.wait_for(texts, 30)
            assert [int(t[: -len(big)]) for t in got] == list(range(count))
            for _ in range(200):  # the stalled one is closed by the outgoing bound
                if server.connection_count == 1:
                    break
                await asyncio.sleep(0.05)
            assert server.connection_count == 1
            await reader.disconnect()
            await stalled.disconnect()

    asyncio.run(main())
