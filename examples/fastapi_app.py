"""One port, three things: an HTML page, a JSON route and HardLight (the chat app), on FastAPI.

    python examples/fastapi_app.py              # https://localhost:8443/ (self-signed TLS)
    python examples/fastapi_app.py --port 0     # any free port (the URL is printed)

* ``GET /`` is a page linking to the browser chat demo, which is served from the same
  origin (``/examples/browser/``, ``/clients/js/src/``) and talks HardLight to this server;
* ``GET /api/rooms`` is JSON: the chat rooms with their message counts, and how many
  HardLight connections are open;
* a WebSocket upgrade to ``/`` is HardLight (``hl/2``, or ``hl.2`` from a browser): the
  Python clients connect to ``localhost:PORT`` with the printed fingerprint pinned.

uvicorn terminates TLS and runs the WebSockets with wsproto: its default implementation
(the websockets library) refuses the subprotocol name ``hl/2`` before the app sees it.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import WebSocketRoute

from hardlight_apps.chat import ChatHandler, ChatRooms
from hardlight_asgi import HardLightApp
from hardlight_support import ServerTLS

ROOT = Path(__file__).resolve().parents[1]

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>HardLight on FastAPI</title></head>
<body style="font: 15px/1.4 system-ui, sans-serif; margin: 2em">
  <h1>HardLight on FastAPI</h1>
  <p>This page, <a href="/api/rooms">a JSON route</a> and a HardLight chat server share
  one port.</p>
  <p><a id="chat" href="/examples/browser/index.html">Open the chat</a> (the browser
  client, connected to this server).</p>
  <script>
    const server = `wss://${location.host}/`;
    document.getElementById("chat").href =
      "/examples/browser/index.html?server=" + encodeURIComponent(server);
  </script>
</body>
</html>
"""


def create_app() -> tuple[FastAPI, HardLightApp, ChatRooms]:
    """The FastAPI app with HardLight mounted at ``/`` for WebSocket upgrades."""
    rooms = ChatRooms()
    handler = type("FastAPIChatHandler", (ChatHandler,), {"rooms": rooms})
    hardlight = HardLightApp(handler, shutdown_grace=2.0)
    # HardLight's graceful shutdown runs when FastAPI's lifespan ends
    api = FastAPI(lifespan=hardlight.lifespan)

    @api.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @api.get("/api/rooms")
    async def list_rooms() -> dict[str, Any]:
        return {
            "rooms": {
                topic.inner.decode("utf-8", "replace").removeprefix("chat-"): len(history)
                for topic, history in rooms.history.items()
            },
            "connections": hardlight.connection_count,
        }

    # an ASGI app as a WebSocket route's endpoint (Starlette's route: FastAPI's own
    # websocket routes wrap functions of a WebSocket, not ASGI apps)
    api.router.routes.append(WebSocketRoute("/", hardlight))
    api.mount("/examples/browser", StaticFiles(directory=ROOT / "examples" / "browser"))
    api.mount("/clients/js/src", StaticFiles(directory=ROOT / "clients" / "js" / "src"))
    return api, hardlight, rooms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    args = parser.parse_args(argv)

    api, _, _ = create_app()
    tls = ServerTLS.self_signed("localhost", args.host)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="hardlight-fastapi-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(tls.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(tls.key_pem)
        config = uvicorn.Config(
            api,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            ws="wsproto",  # accepts the subprotocol "hl/2" (see the module docstring)
            lifespan="on",
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
        print(f"serving on https://localhost:{port}/", flush=True)
        print(f"fingerprint {tls.fingerprint}", flush=True)
        # uvicorn stops gracefully on Ctrl-C, then raises it again
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=[sock])
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
