"""A counter server on its own event-loop thread, and a raw WebSocket client for abuse."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import threading
from typing import Any

from hardlight_apps.counter import CounterHandler
from hardlight_core._connection import ClientConnection
from hardlight_core._limits import Limits
from hardlight_support import ClientConfig, ServerConfig

TIMEOUT = 10.0


class ServerThread:
    """``hardlight_asyncio.Server`` running on a private loop in a thread."""

    def __init__(self, limits: Limits | None = None) -> None:
        from hardlight_asyncio import Server

        self.config = ServerConfig.self_signed("localhost:0", limits=limits)
        self.loop = asyncio.new_event_loop()
        self.server = Server(self.config, CounterHandler)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self.server.start())
        self.port = self.server.port

    def run(self, coro: Any, timeout: float = TIMEOUT) -> Any:
        """Run a coroutine on the server's loop and wait for it (bounded)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def client_config(self) -> ClientConfig:
        """A client config pinned to this server's certificate."""
        assert self.config.fingerprint is not None
        return ClientConfig.pinned(
            f"localhost:{self.port}", self.config.fingerprint, call_timeout=TIMEOUT
        )

    def stop(self) -> None:
        """Stop the server and its loop."""
        try:
            self.run(self.server.stop(grace=1.0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT)
            self.loop.close()


class RawClient:
    """A TLS socket that did the HardLight upgrade and then sends whatever it is told."""

    def __init__(
        self, server: ServerThread, *, handshake: bool = True, rcvbuf: int | None = None
    ) -> None:
        assert server.config.tls is not None
        context = ssl.create_default_context(cadata=server.config.tls.cert_pem.decode())
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # a small window makes a slow reader show quickly
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(TIMEOUT)
        raw.connect(("127.0.0.1", server.port))
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.machine = ClientConnection("localhost", compression_level=6)
        self.buffer = b""
        if handshake:
            self.sock.sendall(self.machine.data_to_send())
            head = self.read_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def send_frame(
        self, payload: bytes, opcode: int = 2, *, masked: bool = True, rsv: int = 0,
        length: int | None = None,
    ) -> None:
        """Send one frame, honest or not (``length`` overrides the announced length)."""
        n = len(payload) if length is None else length
        head = bytes([0x80 | rsv << 4 | opcode])
        mask_bit = 0x80 if masked else 0
        if n < 126:
            head += bytes([mask_bit | n])
        elif n < 65536:
            head += bytes([mask_bit | 126]) + struct.pack(">H", n)
        else:
            head += bytes([mask_bit | 127]) + struct.pack(">Q", n)
        if masked:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def read_frames(self, until_close: bool = True) -> list[tuple[int, bytes]]:
        """Frames the server sends until it closes (opcode, payload); bounded by TIMEOUT."""
        frames: list[tuple[int, bytes]] = []
        data = self.buffer
        while True:
            while len(data) >= 2:
                n = data[1] & 0x7F
                at = 2
                if n == 126:
                    if len(data) < 4:
                        break
                    n, at = struct.unpack(">H", data[2:4])[0], 4
                elif n == 127:
                    if len(data) < 10:
                        break
                    n, at = struct.unpack(">Q", data[2:10])[0], 10
                if len(data) < at + n:
                    break
                frames.append((data[0] & 0x0F, data[at : at + n]))
                data = data[at + n :]
                if frames[-1][0] == 8 and until_close:
                    return frames
            try:
                chunk = self.sock.recv(65536)
            except (ssl.SSLError, OSError):
                return frames
            if not chunk:
                return frames
            data += chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    """The code of the close frame among ``frames``."""
    for opcode, payload in frames:
        if opcode == 8:
            return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
    return None
