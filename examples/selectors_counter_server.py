"""Serve the counter app with nothing but ``selectors``, ``socket`` and ``ssl``.

The point: ``hardlight_core`` does no I/O, so any event loop can drive it. Here a
plain ``selectors`` loop moves bytes between non-blocking TLS sockets and one
``ServerSession`` per connection, runs the handlers (the counter's never await)
and uses ``session.get_timer()`` as the select timeout.

    python examples/selectors_counter_server.py --self-signed --port 8443
"""

from __future__ import annotations

import argparse
import selectors
import socket
import ssl
import sys
import time
from typing import Any

from hardlight_apps.counter import CounterEvent, CounterHandler, ServerSentTest
from hardlight_core import HandlerCall, ServerCore, ServerSession, TopicCreated, encode
from hardlight_support import ServerTLS


class Connection:
    """One TLS socket and its session."""

    def __init__(self, sock: ssl.SSLSocket, session: ServerSession) -> None:
        self.sock = sock
        self.session = session
        self.handshaken = False
        self.outgoing = b""


def run_handlers(session: ServerSession, calls: list[HandlerCall]) -> None:
    """Drive each handler coroutine to its end (the counter's handlers never await)."""
    for call in calls:
        call.run_inline()


def serve(host: str, port: int, tls: ServerTLS, max_seconds: float) -> None:
    """Serve until ``max_seconds`` pass."""
    context = tls.ssl_context()
    core = ServerCore(CounterHandler)
    greeting = encode(ServerSentTest(), CounterEvent)
    core.on_topic = lambda change: (
        core.emit(change.topic, greeting) if isinstance(change, TopicCreated) else None
    )
    selector = selectors.DefaultSelector()
    listener = socket.create_server((host, port))
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ, None)
    print(f"listening on {host}:{listener.getsockname()[1]}", flush=True)
    print(f"fingerprint {tls.fingerprint}", flush=True)
    connections: dict[int, Connection] = {}
    deadline = time.monotonic() + max_seconds

    def close(conn: Connection) -> None:
        conn.session.connection_lost()
        selector.unregister(conn.sock)
        conn.sock.close()
        connections.pop(id(conn), None)

    def pump(conn: Connection) -> None:
        """Write what can be written; close when the session is done."""
        conn.outgoing += conn.session.data_to_send()
        try:
            while conn.outgoing:
                sent = conn.sock.send(conn.outgoing)
                conn.outgoing = conn.outgoing[sent:]
        except (ssl.SSLWantWriteError, BlockingIOError):
            pass
        except OSError:
            close(conn)
            return
        if conn.session.finished and not conn.outgoing:
            close(conn)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outgoing else 0)
        selector.modify(conn.sock, events, conn)

    while time.monotonic() < deadline:
        timers = [c.session.get_timer() for c in connections.values()]
        now = time.monotonic()
        wake = min([t for t in timers if t is not None] + [now + 0.5, deadline])
        for key, _mask in selector.select(max(0.0, wake - now)):
            if key.data is None:
                try:
                    raw, _ = listener.accept()
                except BlockingIOError:
                    continue
                raw.setblocking(False)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
                conn = Connection(sock, core.open_session())
                conn.session.adapter = conn
                connections[id(conn)] = conn
                selector.register(sock, selectors.EVENT_READ, conn)
                continue
            conn = key.data
            if not conn.handshaken:
                try:
                    conn.sock.do_handshake()
                    conn.handshaken = True
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                except (ssl.SSLError, OSError):
                    close(conn)
                    continue
            try:
                data = conn.sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pump(conn)
                continue
            except OSError:
                data = b""
            run_handlers(conn.session, conn.session.receive_data(data, time.monotonic()))
            for other in list(connections.values()):  # emits may have reached others
                pump(other)
        now = time.monotonic()
        for conn in list(connections.values()):
            timer = conn.session.get_timer()
            if timer is not None and timer <= now:
                conn.session.handle_timer(now)
                pump(conn)
    for conn in list(connections.values()):
        close(conn)
    listener.close()


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--self-signed", action="store_true")
    group.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args: Any = parser.parse_args(argv)
    tls = (
        ServerTLS.self_signed("localhost", args.host)
        if args.self_signed
        else ServerTLS.from_files(args.cert, args.key)
    )
    serve(args.host, args.port, tls, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
