"""Run the browser chat demo: a chat server (plain ws, loopback) and a static page server.

    python examples/browser/serve.py            # then open the printed URL

The page (``index.html`` + ``chat.js``) loads the client module from
``clients/js/src`` and the service description ``chat.schema.json`` (made with
``python -m hardlight schema hardlight_apps.chat:Chat -o ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.server
import threading
from pathlib import Path

from hardlight._browser_proxy import start_browser_proxy
from hardlight_apps.chat import ChatHandler, ChatRooms
from hardlight_asyncio import Server
from hardlight_support import ServerConfig

ROOT = Path(__file__).resolve().parents[2]
SERVED = ("examples/browser/", "clients/js/src/")


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """Serves only the demo and the client module from the repository."""

    extensions_map = {
        ".html": "text/html",
        ".js": "text/javascript",
        ".json": "application/json",
        ".css": "text/css",
        "": "application/octet-stream",
    }

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].lstrip("/")
        if not path.startswith(SERVED) or ".." in path:
            self.send_error(404)
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


async def main(chat_port: int, http_port: int) -> None:
    handler = type("DemoChatHandler", (ChatHandler,), {"rooms": ChatRooms()})
    server = Server(ServerConfig.plain("127.0.0.1:0"), handler)
    await server.start()
    # Browsers offer the subprotocol as "hl.2" (they cannot send "hl/2"): the browser
    # proxy maps it for the server and relays everything else untouched.
    proxy = await start_browser_proxy("127.0.0.1", server.port, port=chat_port)
    page = http.server.ThreadingHTTPServer(
        ("127.0.0.1", http_port), functools.partial(StaticHandler, directory=str(ROOT))
    )
    threading.Thread(target=page.serve_forever, daemon=True).start()
    ws = f"ws://127.0.0.1:{proxy.sockets[0].getsockname()[1]}/"
    print(f"open http://127.0.0.1:{page.server_address[1]}/examples/browser/index.html?server={ws}")
    try:
        await server.serve_forever()
    finally:
        proxy.close()
        page.shutdown()
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chat-port", type=int, default=8765)
    parser.add_argument("--http-port", type=int, default=8000)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.chat_port, args.http_port))
