"""The browser client (``clients/js``): schemas, its Node tests, and Chromium end to end.

* ``python -m hardlight schema`` output for the reference apps, checked against the
  copies the JS tests and the demo use (they must not drift from the declarations).
* The Node tests (``node --test``): the JS codec against every rkyv vector, the
  envelope against messages.json, the app schemas against apps.json, the client
  against a scripted socket.
* Headless Chromium (Debian's ``chromium`` driven by ``playwright-core``) against
  real servers started here: counter and chat flows, events, state, 256 calls in
  flight, every codec type both ways, typed errors, a refused upgrade, TLS, and a
  screenshot of the demo page after a chat exchange.

Without node, chromium or ``clients/js/node_modules`` these tests skip, saying why;
with ``CI=true`` they fail instead. The server side is a parameter: add a factory to
``SERVER_FACTORIES`` to run the same browser tests against another server.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import http.server
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hardlight import _schema
from hardlight.__main__ import main as hardlight_main
from hardlight._browser_proxy import start_browser_proxy, swap_protocol
from hardlight_core import (
    Array,
    Box,
    Err,
    Handler,
    Result,
    ServerDecodeError,
    Service,
    Variant,
    char,
    f32,
    f64,
    i16,
    i128,
    u8,
    u16,
    u32,
    u64,
    usize,
)
from hardlight_core._types import Option
from hardlight_support import ServerConfig, ServerTLS

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "clients" / "js"
IN_CI = os.environ.get("CI") == "true"
CHROMIUM = Path(os.environ.get("HL_CHROMIUM", "/usr/bin/chromium"))

APPS = {
    "counter": "hardlight_apps.counter:Counter",
    "chat": "hardlight_apps.chat:Chat",
    "pet": "hardlight_apps.pet:PetService",
    "todo": "hardlight_apps.todo:Todo",
}


def _need(ok: bool, reason: str) -> None:
    """Skip (outside CI) or fail (CI=true) when a tool is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: .ci/run installs it)")
    pytest.skip(reason)


def _node() -> str:
    node = shutil.which("node")
    _need(node is not None, "node is not installed")
    assert node is not None
    return node


# ---------------------------------------------------------------- a service using every type


class Level(enum.Enum):
    Low = 0
    High = 1


class Circle(Variant, frozen=True):
    radius: f32


class Rect(Variant, frozen=True):
    w: u32
    h: u32


class Empty(Variant, frozen=True):
    pass


Shape = Circle | Rect | Empty


class Node(msgspec.Struct, frozen=True):
    value: u8
    children: list[Node]


class Everything(msgspec.Struct, frozen=True):
    tiny: u8
    small: i16
    word: u32
    big: u64
    huge: i128
    ratio: f32
    precise: f64
    letter: char
    name: str
    long_name: str
    raw: bytes
    numbers: list[u32]
    maybe: str | None
    nothing: u16 | None
    pair: tuple[u8, str]
    triple: Array[u16, 3]
    by_name: dict[str, u32]
    by_id: dict[u32, str]
    outcome: Result[u32, str]
    boxed: Box[u64]
    level: Level
    shape: Shape
    flag: bool
    size: usize
    tree: Node


SAMPLE = Everything(
    tiny=255,
    small=-12345,
    word=4_000_000_000,
    big=2**63 + 5,
    huge=-(2**100) + 7,
    ratio=1.5,
    precise=-2.25e-10,
    letter="\N{CRAB}",
    name="ok",
    long_name="a string longer than seven bytes, with ünïcödé",
    raw=bytes(range(40)),
    numbers=[1, 2, 3, 0xFFFFFFFF],
    maybe="present",
    nothing=None,
    pair=(7, "seven"),
    triple=(1, 2, 65535),
    by_name={"one": 1, "two": 2, "three": 3},
    by_id={i * 7919: f"item-{i}" for i in range(40)},
    outcome=Err("nope"),
    boxed=42,
    level=Level.High,
    shape=Rect(w=3, h=4),
    flag=True,
    size=99,
    tree=Node(1, [Node(2, []), Node(3, [Node(4, [])])]),
)


class ProbeState(msgspec.Struct):
    calls: u32 = 0
    last: str = ""


class Probe(Service):
    """Round trips of every type, and each way a call can fail."""

    State = ProbeState

    async def sample(self) -> Everything: ...
    async def check(self, value: Everything) -> bool: ...
    async def echo(self, value: Everything) -> Everything: ...
    async def fail(self) -> None: ...
    async def bad_return(self) -> u8: ...
    async def refuse(self) -> None: ...
    async def slow(self, ms: u32) -> u32: ...


class ProbeHandler(Probe, Handler):
    state: ProbeState

    async def sample(self) -> Everything:
        return SAMPLE

    async def check(self, value: Everything) -> bool:
        self.state.calls += 1
        return value == SAMPLE

    async def echo(self, value: Everything) -> Everything:
        self.state.last = value.name
        return value

    async def fail(self) -> None:
        raise RuntimeError("this handler fails on purpose")

    async def bad_return(self) -> u8:
        return 300  # not a u8: the server cannot encode it

    async def refuse(self) -> None:
        raise ServerDecodeError("refused on purpose")

    async def slow(self, ms: u32) -> u32:
        await asyncio.sleep(ms / 1000)
        return ms


# ---------------------------------------------------------------- schema command


def test_schemas_in_the_repository_match_the_declarations() -> None:
    for app, target in APPS.items():
        schema = _schema.build_schema(_schema.load_target(target))
        committed = JS / "test" / "schemas" / f"{app}.json"
        assert committed.read_text() == _schema.schema_json(schema), (
            f"{committed} is stale: python -m hardlight schema {target} -o {committed}"
        )
        dts = JS / "test" / "schemas" / f"{app}.d.ts"
        assert dts.read_text() == _schema.typescript(schema)
    demo = ROOT / "examples" / "browser" / "chat.schema.json"
    chat = _schema.build_schema(_schema.load_target(APPS["chat"]))
    assert demo.read_text() == _schema.schema_json(chat)


def test_schema_command_writes_json_and_typescript(tmp_path: Path) -> None:
    out, dts = tmp_path / "counter.json", tmp_path / "counter.d.ts"
    status = hardlight_main(["schema", APPS["counter"], "-o", str(out), "--dts", str(dts)])
    assert status == 0
    schema = json.loads(out.read_text())
    names = [m["name"] for m in schema["methods"]]
    assert names == ["new_counter", "increment", "decrement", "get"]
    assert [m["tag"] for m in schema["methods"]] == [0, 1, 2, 3]
    assert schema["methods"][1]["args"] == [{"name": "amount", "type": "u32"}]
    assert schema["methods"][3]["returns"] == "u32"
    assert schema["event"] == {"ref": "CounterEvent"}
    assert schema["types"]["CounterEvent"]["variants"][0] == [
        "Incremented",
        {"fields": [["to", "u32"], ["from", "u32"]]},  # from_ in Python, from in Rust
        0,
    ]
    assert schema["state"]["fields"][1]["default"] == "00" * 12
    text = dts.read_text()
    assert "increment(amount: number): Promise<null>;" in text
    assert "export interface CounterTypes" in text
    assert hardlight_main(["schema", "no_such_module_here:Thing"]) == 2


def test_schema_of_every_type() -> None:
    schema = _schema.build_schema(ProbeHandler)
    types = schema["types"]
    assert schema["service"] == "Probe"
    assert schema["event"] is None
    fields = dict((n, t) for n, t in types["Everything"]["fields"])
    assert fields["big"] == "u64"
    assert fields["huge"] == "i128"
    assert fields["ratio"] == "f32"
    assert fields["precise"] == "f64"
    assert fields["letter"] == "char"
    assert fields["raw"] == "bytes"
    assert fields["numbers"] == {"vec": "u32"}
    assert fields["maybe"] == {"option": "string"}
    assert fields["pair"] == {"tuple": ["u8", "string"]}
    assert fields["triple"] == {"array": "u16", "len": 3}
    assert fields["by_id"] == {"map": ["u32", "string"]}
    assert fields["outcome"] == {"result": ["u32", "string"]}
    assert fields["boxed"] == {"box": "u64"}
    assert fields["size"] == "usize"
    assert fields["level"] == {"ref": "Level"}
    assert types["Level"] == {"enum": "Level", "variants": [["Low", None, 0], ["High", None, 1]]}
    assert fields["shape"] == {"ref": "Shape"}  # the union's module-level name
    assert [v[0] for v in types["Shape"]["variants"]] == ["Circle", "Rect", "Empty"]
    assert types["Shape"]["variants"][2] == ["Empty", None, 2]
    # recursion goes through a reference
    assert types["Node"]["fields"] == [["value", "u8"], ["children", {"vec": {"ref": "Node"}}]]
    assert schema["state"]["fields"] == [
        {"index": 0, "name": "calls", "type": "u32", "default": "00000000"},
        {"index": 1, "name": "last", "type": "string", "default": "00" * 8},
    ]
    nested = _schema.SchemaBuilder().type_of(Option[Option[u8]])
    assert nested == {"option": {"option": "u8"}}
    assert _schema.rust_name("from_") == "from"
    assert _schema.rust_name("value_") == "value_"


def test_browser_proxy_rewrites_only_the_subprotocol_header() -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Protocol: hl.2\r\nX-Other: hl.2\r\n\r\n"
    assert swap_protocol(request, b"hl.2", b"hl/2") == (
        b"GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Protocol: hl/2\r\nX-Other: hl.2\r\n\r\n"
    )
    other = b"HTTP/1.1 400 Bad Request\r\nsec-websocket-protocol: chat\r\n\r\n"
    assert swap_protocol(other, b"hl/2", b"hl.2") == other


# ---------------------------------------------------------------- node tests


def test_node_tests() -> None:
    node = _node()
    files = sorted(str(p.relative_to(JS)) for p in (JS / "test").glob("*.test.js"))
    assert len(files) >= 4
    proc = subprocess.run(
        [node, "--test", *files], cwd=JS, capture_output=True, text=True, timeout=120
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "# fail 0" in out
    assert "# pass 0" not in out


# ---------------------------------------------------------------- servers for the browser


@dataclass(frozen=True)
class AppServer:
    """One server a browser test needs: its handler, TLS or not, allowed origins."""

    handler: type[Any]
    tls: bool = False
    allowed_origins: frozenset[str] | None = None


ServerFactory = Callable[[dict[str, AppServer]], contextlib.AbstractContextManager[dict[str, str]]]

# Browsers cannot offer the subprotocol "hl/2" ("/" is not a token character, so the
# WebSocket constructor throws); the JS client offers "hl.2". A server that does not
# accept that alias gets hardlight's browser proxy in front of it, which rewrites the
# one handshake header both ways and then relays the bytes untouched.


def _insecure_client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _accepts_browser_protocol(port: int, tls: bool) -> bool:
    """Does the server at 127.0.0.1:port answer an ``hl.2`` upgrade with 101?"""
    request = (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Protocol: hl.2\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        sock: socket.socket = raw
        if tls:
            sock = _insecure_client_context().wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        return head.startswith(b"HTTP/1.1 101")


async def _browser_proxy(port: int, tls: bool) -> asyncio.Server:
    return await start_browser_proxy(
        "127.0.0.1",
        port,
        ssl_context=ServerTLS.self_signed("127.0.0.1").ssl_context() if tls else None,
        upstream_ssl=_insecure_client_context() if tls else None,
    )


@contextlib.contextmanager
def asyncio_servers(apps: dict[str, AppServer]) -> Iterator[dict[str, str]]:
    """hardlight_asyncio servers on a loop thread; yields name -> ws:// or wss:// URL."""
    from hardlight_asyncio import Server

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers: list[Any] = []
    proxies: list[asyncio.Server] = []

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    try:
        urls = {}
        for name, app in apps.items():
            if app.tls:
                config = ServerConfig.self_signed(
                    "127.0.0.1:0", allowed_origins=app.allowed_origins
                )
            else:
                config = ServerConfig.plain("127.0.0.1:0", allowed_origins=app.allowed_origins)
            server = Server(config, app.handler)
            run(server.start())
            servers.append(server)
            port = server.port
            if not _accepts_browser_protocol(port, app.tls):
                proxy = run(_browser_proxy(port, app.tls))
                proxies.append(proxy)
                port = proxy.sockets[0].getsockname()[1]
            scheme = "wss" if app.tls else "ws"
            urls[name] = f"{scheme}://127.0.0.1:{port}/"
        yield urls
    finally:
        for proxy in proxies:
            proxy.close()
        for server in servers:
            with contextlib.suppress(Exception):
                run(server.stop(grace=1.0))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _asgi_servers(kind: str) -> ServerFactory:
    """HardLightApp (hardlight_asgi) under a real ASGI server, one per app (browsers offer
    hl.2, which uvicorn's default WebSocket implementation accepts too)."""
    import importlib.util

    path = ROOT / "tests" / "asgi" / "asgi_harness.py"
    spec = importlib.util.spec_from_file_location("hl_asgi_browser_harness", path)
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)

    def factory(apps: dict[str, AppServer]) -> contextlib.AbstractContextManager[dict[str, str]]:
        servers: contextlib.AbstractContextManager[dict[str, str]] = harness.browser_servers(
            apps, kind
        )
        return servers

    return factory


SERVER_FACTORIES: list[Any] = [
    pytest.param(asyncio_servers, id="asyncio"),
    pytest.param(_asgi_servers("uvicorn"), id="asgi-uvicorn"),
    pytest.param(_asgi_servers("hypercorn"), id="asgi-hypercorn"),
]


class _Static(http.server.SimpleHTTPRequestHandler):
    """The client module, the test page, the demo and the test's schemas; nothing else."""

    extensions_map = {
        ".html": "text/html",
        ".js": "text/javascript",
        ".json": "application/json",
        "": "application/octet-stream",
    }
    schemas: Path

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        if ".." in path:
            return ""
        if path.startswith("/schemas/"):
            return str(self.schemas / path.removeprefix("/schemas/"))
        if path.startswith(("/clients/js/src/", "/clients/js/browser-test/", "/examples/browser/")):
            return str(ROOT / path.lstrip("/"))
        return ""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def static_server(schemas: Path) -> Iterator[str]:
    handler = type("Static", (_Static,), {"schemas": schemas})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the inflated image data) of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at = 8
    idat = b""
    width = height = 0
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        body = data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    pixels = zlib.decompress(idat)
    return width, height, len(set(pixels))


@pytest.mark.parametrize("server_factory", SERVER_FACTORIES)
def test_chromium_end_to_end(server_factory: ServerFactory, tmp_path: Path) -> None:
    node = _node()
    _need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    _need(
        (JS / "node_modules" / "playwright-core").is_dir(),
        "clients/js/node_modules is missing (cd clients/js && npm ci)",
    )
    from hardlight_apps.chat import ChatHandler, ChatRooms
    from hardlight_apps.counter import CounterHandler

    schemas = tmp_path / "schemas"
    schemas.mkdir()
    for name, target in (("counter", APPS["counter"]), ("chat", APPS["chat"])):
        schema = _schema.build_schema(_schema.load_target(target))
        (schemas / f"{name}.json").write_text(_schema.schema_json(schema))
    (schemas / "probe.json").write_text(_schema.schema_json(_schema.build_schema(ProbeHandler)))
    chat = type("BrowserChatHandler", (ChatHandler,), {"rooms": ChatRooms()})
    apps = {
        "counter": AppServer(CounterHandler),
        "chat": AppServer(chat),
        "probe": AppServer(ProbeHandler),
        "refused": AppServer(CounterHandler, allowed_origins=frozenset({"https://elsewhere.test"})),
        "tls": AppServer(CounterHandler, tls=True),
    }
    shot_dir = Path(os.environ.get("HL_SCREENSHOT_DIR", str(tmp_path)))
    shot = shot_dir / "browser-chat.png"
    with server_factory(apps) as urls, static_server(schemas) as base:
        config = {"base": base, "servers": urls, "screenshot": str(shot)}
        env = {**os.environ, "HL_BROWSER_CONFIG": json.dumps(config), "HL_CHROMIUM": str(CHROMIUM)}
        proc = subprocess.run(
            [node, "--test", "browser-test/chromium.test.js"],
            cwd=JS,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    out = proc.stdout + proc.stderr
    (shot_dir / "chromium-tests.txt").write_text(out)
    assert proc.returncode == 0, out[:5000] + "\n...\n" + out[-3000:]
    assert "# fail 0" in out and "# skipped 0" in out, out[-4000:]
    assert "# pass 7" in out, out[-4000:]
    width, height, distinct = _png_facts(shot)
    assert (width, height) == (900, 560)
    assert shot.stat().st_size > 10_000
    assert distinct > 50  # text, colours and edges, not a blank page
