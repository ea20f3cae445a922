"""The asyncio adapter's TLS on SSLSockets (``_tls_socket``) and its fallback to asyncio's TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import pytest

from hardlight_asyncio import Client, Server
from hardlight_asyncio._tls_socket import (
    TLSListener,
    TLSSocketTransport,
    open_tls_connection,
    tls_handshake,
)
from hardlight_core import Handler, Limits, Service, u32
from hardlight_support import ClientConfig, ServerConfig, ServerTLS

TLS = ServerTLS.self_signed("localhost", "127.0.0.1")
TRANSPORTS = ("socket", "asyncio")


class Blob(Service):
    """Echoes bytes, to push large messages both ways."""

    async def echo(self, data: bytes) -> bytes: ...

    async def add(self, x: u32, y: u32) -> u32: ...


class BlobHandler(Blob, Handler):
    """Handlers for :class:`Blob`."""

    async def echo(self, data: bytes) -> bytes:
        return data

    async def add(self, x: u32, y: u32) -> u32:
        return (x + y) & 0xFFFFFFFF


def _client_config(port: int, **kwargs: Any) -> ClientConfig:
    return ClientConfig(address=f"localhost:{port}", tls=_client_tls(), **kwargs)


def _client_tls() -> Any:
    from hardlight_support import ClientTLS

    return ClientTLS(ca_pem=TLS.cert_pem)


@pytest.mark.parametrize("server_tls", TRANSPORTS)
@pytest.mark.parametrize("client_tls", TRANSPORTS)
def test_every_combination_carries_small_and_large_messages(
    server_tls: str, client_tls: str
) -> None:
    async def main() -> None:
        config = ServerConfig(host="127.0.0.1", port=0, tls=TLS)
        async with Server(config, BlobHandler, tls_transport=server_tls) as server:
            client = Client(Blob, _client_config(server.port), tls_transport=client_tls)
            await client.connect()
            try:
                assert await client.add(2, 3) == 5
                big = bytes(range(256)) * 3000  # 768 KB: many TLS records each way
                results = await asyncio.gather(*(client.echo(big[i:]) for i in range(8)))
                assert results == [big[i:] for i in range(8)]
                assert await asyncio.gather(*(client.add(i, 1) for i in range(200))) == [
                    i + 1 for i in range(200)
                ]
            finally:
                await client.disconnect()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_server_drops_a_socket_that_never_starts_tls() -> None:
    async def main() -> None:
        limits = Limits(handshake_timeout=0.3)
        config = ServerConfig(host="127.0.0.1", port=0, tls=TLS, limits=limits)
        async with Server(config, BlobHandler, tls_transport="socket") as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            started = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(reader.read(100), 5) == b""  # closed by the server
            assert asyncio.get_running_loop().time() - started < 3
            writer.close()
            # and it still serves real clients
            client = Client(Blob, _client_config(server.port))
            await client.connect()
            assert await client.add(1, 1) == 2
            await client.disconnect()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_plain_http_to_the_tls_port_is_dropped_and_does_not_hurt_others() -> None:
    async def main() -> None:
        config = ServerConfig(host="127.0.0.1", port=0, tls=TLS)
        async with Server(config, BlobHandler, tls_transport="socket") as server:
            client = Client(Blob, _client_config(server.port))
            await client.connect()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            try:  # at most a TLS alert, then EOF, or a reset (our request was left unread)
                answer = await asyncio.wait_for(reader.read(), 5)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP")
            writer.close()
            assert await client.add(40, 2) == 42
            assert server.connection_count == 1
            await client.disconnect()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_unknown_tls_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="tls_transport"):
        Client(Blob, ClientConfig(address="localhost:1"), tls_transport="fast")
    with pytest.raises(ValueError, match="tls_transport"):
        Server(ServerConfig(host="127.0.0.1", port=0, tls=TLS), BlobHandler, tls_transport="x")


# -- the transport itself, over a socket pair ---------------------------------------------------


class Recorder(asyncio.Protocol):
    """Collects what a transport reports."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.paused = 0
        self.resumed = 0
        self.eof = False
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> None:
        self.eof = True

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def _tls_pair() -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    client_context = _client_tls().ssl_context()
    server_task = asyncio.ensure_future(tls_handshake(loop, b, TLS.ssl_context(), server_side=True))
    client = await tls_handshake(
        loop, a, client_context, server_side=False, server_hostname="localhost"
    )
    return client, await server_task


def test_backpressure_pauses_and_resumes_the_writer_and_keeps_every_byte() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client_sock, server_sock = await _tls_pair()
        writer, reader = Recorder(), Recorder()
        w = TLSSocketTransport(loop, client_sock, writer)
        r = TLSSocketTransport(loop, server_sock, reader)
        r.pause_reading()  # the peer does not read: the kernel buffers fill, then ours
        w.set_write_buffer_limits(high=64 * 1024)
        payload = bytes(range(251)) * 40_000  # ~10 MB
        for i in range(0, len(payload), 100_000):
            w.write(payload[i : i + 100_000])
        assert writer.paused == 1
        assert w.get_write_buffer_size() > 64 * 1024
        r.resume_reading()
        for _ in range(2000):
            if len(reader.data) == len(payload):
                break
            await asyncio.sleep(0.005)
        assert bytes(reader.data) == payload
        assert writer.resumed == 1
        assert w.get_write_buffer_size() == 0
        w.close()
        assert await asyncio.wait_for(writer.lost, 5) is None
        assert await asyncio.wait_for(reader.lost, 5) is None
        assert reader.eof

    asyncio.run(asyncio.wait_for(main(), 60))


def test_close_sends_what_is_queued_first_and_abort_does_not() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client_sock, server_sock = await _tls_pair()
        a, b = Recorder(), Recorder()
        ta = TLSSocketTransport(loop, client_sock, a)
        TLSSocketTransport(loop, server_sock, b)
        ta.write(b"last words")
        ta.close()
        assert ta.is_closing()
        ta.write(b"ignored after close")
        await asyncio.wait_for(b.lost, 5)
        assert bytes(b.data) == b"last words"
        await asyncio.wait_for(a.lost, 5)

        client_sock, server_sock = await _tls_pair()
        c, d = Recorder(), Recorder()
        tc = TLSSocketTransport(loop, client_sock, c)
        TLSSocketTransport(loop, server_sock, d)
        tc.abort()
        assert await asyncio.wait_for(c.lost, 5) is None
        await asyncio.wait_for(d.lost, 5)  # reset or EOF: either way it ends

    asyncio.run(asyncio.wait_for(main(), 30))


def test_close_gives_up_on_a_peer_that_never_answers_close_notify() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client_sock, server_sock = await _tls_pair()
        a = Recorder()
        ta = TLSSocketTransport(loop, client_sock, a, linger=0.2)
        ta.close()  # server_sock is never read: no close_notify comes back
        assert await asyncio.wait_for(a.lost, 5) is None
        server_sock.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_listener_bounds_the_handshake_and_closes_cleanly() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        made: list[Recorder] = []

        def factory() -> Recorder:
            made.append(Recorder())
            return made[-1]

        listener = await TLSListener.bind(
            loop, factory, "127.0.0.1", 0, TLS.ssl_context(), handshake_timeout=0.2
        )
        port = listener.sockets[0].getsockname()[1]
        silent = socket.create_connection(("127.0.0.1", port))
        transport, protocol = await open_tls_connection(
            loop, Recorder, "localhost", port, _client_tls().ssl_context(), "localhost"
        )
        for _ in range(200):
            if made:
                break
            await asyncio.sleep(0.01)
        assert len(made) == 1  # the silent socket never became a connection
        transport.write(b"hello")
        for _ in range(200):
            if made[0].data:
                break
            await asyncio.sleep(0.01)
        assert bytes(made[0].data) == b"hello"
        silent.setblocking(False)
        # dropped after the handshake timeout
        assert await asyncio.wait_for(loop.sock_recv(silent, 10), 5) == b""
        silent.close()
        listener.close()
        await listener.wait_closed()
        assert listener.sockets == ()
        transport.close()
        await asyncio.wait_for(protocol.lost, 5)  # type: ignore[attr-defined]

    asyncio.run(asyncio.wait_for(main(), 30))
