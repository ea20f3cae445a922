"""HardLight as an ASGI 3 application: the ASGI server does the WebSocket, the core the rest.

The ASGI server (uvicorn, hypercorn, ...) owns the socket, TLS, the HTTP upgrade,
framing, pings and its own timeouts; it hands this application whole messages. The
application negotiates ``hl/2`` (or ``hl.2``, the browsers' spelling) and the
``X-HL-Compress`` level from the scope, asks the core (:class:`ServerCore`) whether to
accept, and then moves messages between the ASGI ``receive``/``send`` callables and a
core :class:`ServerSession`. Every protocol decision is the core's.

Each connection is one ASGI call: a task group with a writer (woken by the core's
``on_output``) and the reader (the ASGI call's own task); the connection's handler
calls run in that task group, so they end with it. Runs on asyncio and on trio
(through anyio), on whichever loop the ASGI server calls it from (one loop per app).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

import anyio
import anyio.abc

from hardlight_core import (
    HandshakeInfo,
    HardLightError,
    Limits,
    MessageConnection,
    ServerCore,
    ServerSession,
)
from hardlight_core._handshake import (
    SUBPROTOCOLS,
    chosen_subprotocol,
    header_value,
    parse_compression_level,
)
from hardlight_support import AsyncEventEmitter, AsyncTopicNotifier

__all__ = ["EventEmitter", "HardLightApp", "TopicNotifier", "parse_compression_level"]

log = logging.getLogger("hardlight")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: how long to wait, after sending a close, for the ASGI server to report the disconnect
CLOSE_WAIT = 2.0
#: the writer looks at its connection at least this often (a safety net behind the wake-ups)
WRITER_POLL = 1.0
#: the extension that lets a WebSocket app answer the upgrade with any HTTP status
HTTP_RESPONSE_EXTENSION = "websocket.http.response"
#: close codes an endpoint may send (RFC 6455 7.4.1; 1005, 1006 and 1015 are reserved)
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

# the connection whose messages are being fed to the core: its handler calls go to its
# task group (the core's spawn hook is one function for every connection)
_feeding: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar(
    "hardlight_asgi_feeding", default=None
)


#: the async emitter and notifier, the same on every async adapter
EventEmitter = AsyncEventEmitter
TopicNotifier = AsyncTopicNotifier


class _Connection:
    """One accepted WebSocket: its session, the ASGI ``send`` and the writer's wake-up."""

    def __init__(self, session: ServerSession, send: Send) -> None:
        self.session = session
        self.send = send
        self.wake = anyio.Event()
        self.peer_gone = anyio.Event()
        self.task_group: anyio.abc.TaskGroup | None = None
        #: text messages received and dropped (the reference ignores text frames)
        self.text_messages = 0

    async def serve(self, receive: Receive) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.task_group = tg
                tg.start_soon(self._writer)
                await self._reader(receive)
                tg.cancel_scope.cancel()  # the peer is gone: stop the writer and the calls
        finally:
            self.task_group = None
            self.session.connection_lost()

    async def _reader(self, receive: Receive) -> None:
        session = self.session
        _feeding.set(self)  # this task's own context: spawns made while feeding come here
        while True:
            message = await receive()
            kind = message.get("type")
            if kind == "websocket.receive":
                data = message.get("bytes")
                if data is None:  # a text message: ignored, as the reference does
                    self.text_messages += 1
                    continue
                session.receive_message(bytes(data))
                if session.connection.state.ended:
                    self.wake.set()  # a protocol end (e.g. 1009): the writer closes
            elif kind == "websocket.disconnect":
                self.peer_gone.set()
                session.peer_closed(message.get("code", 1005), message.get("reason") or "")
                return

    async def _writer(self) -> None:
        session = self.session
        while True:
            with anyio.move_on_after(WRITER_POLL):
                await self.wake.wait()
            self.wake = anyio.Event()
            for payload in session.messages_to_send():
                try:
                    await self.send({"type": "websocket.send", "bytes": payload})
                except Exception as exc:  # the peer went away (ClientDisconnected, OSError)
                    log.debug("websocket send failed: %s", exc)
                    session.send_failed()
                    self.peer_gone.set()
                    self.cancel()
                    return
            if session.connection.state.ended:
                await self._close()
                self.cancel()
                return

    async def _close(self) -> None:
        """Close the WebSocket with the core's code, then give the peer a moment to answer."""
        if self.peer_gone.is_set():
            return
        connection = self.session.connection
        assert isinstance(connection, MessageConnection)
        code = connection.close_code
        code = code if code is not None and code in _SENDABLE else 1000
        reason = _truncate_reason(connection.close_reason)
        try:
            await self.send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception as exc:
            log.debug("websocket close failed: %s", exc)
            return
        with anyio.move_on_after(CLOSE_WAIT):
            await self.peer_gone.wait()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> Callable[[], object]:
        """Run a handler call in this connection's task group; returns its cancel."""
        tg = self.task_group
        if tg is None:
            coroutine.close()
            raise HardLightError("the connection is not running")
        scope = anyio.CancelScope()
        cancelled = anyio.get_cancelled_exc_class()
        session = self.session

        async def run() -> None:
            try:
                with scope:
                    await coroutine
            except (cancelled, KeyboardInterrupt):
                raise
            except Exception:  # the core contains handler failures; this is a safety net
                log.exception("a handler call escaped the core's containment")
            except BaseException as exc:  # SystemExit, GeneratorExit...: this connection only
                log.error(
                    "a handler raised %s; closing its connection with 1011",
                    type(exc).__name__,
                    exc_info=(type(exc), exc, exc.__traceback__),
                )
                session.close(1011, f"a handler raised {type(exc).__name__}")
                self.wake.set()
            finally:
                coroutine.close()  # cancelled before it started: never leave it unawaited

        tg.start_soon(run)
        return scope.cancel

    def cancel(self) -> None:
        tg = self.task_group
        if tg is not None:
            tg.cancel_scope.cancel()


class HardLightApp:
    """A HardLight server as an ASGI 3 application (``websocket`` scopes; ``lifespan`` too).

    ``HardLightApp(Handler)`` serves ``hl/2`` on whatever path it is mounted at: run it
    alone (``uvicorn.run(app, ssl_certfile=..., ssl_keyfile=...)``) or mount it beside
    HTTP endpoints (Starlette ``WebSocketRoute("/", app)``, FastAPI
    ``api.add_websocket_route("/", app)``). HTTP requests that reach it get 426.

    ``authenticate(info)`` runs on every upgrade (raise :class:`~hardlight_core.Refuse`
    to refuse, with its status); ``allowed_origins`` refuses other browser origins with
    403. Refusals answer the upgrade with their status and reason where the server
    supports the ``websocket.http.response`` extension, else the server answers 403.
    """

    def __init__(
        self,
        handler: type[Any],
        *,
        limits: Limits | None = None,
        max_connections: int = 10_000,
        allowed_origins: frozenset[str] | set[str] | None = None,
        authenticate: Callable[[HandshakeInfo], Any] | None = None,
        shutdown_grace: float = 5.0,
        handler_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.core = ServerCore(
            handler,
            limits=limits,
            max_connections=max_connections,
            allowed_origins=frozenset(allowed_origins) if allowed_origins is not None else None,
            authenticate=authenticate,
            handler_factory=handler_factory,
        )
        self.core.spawn = _spawn
        self.core.on_output = _output_ready
        self.core.clock = anyio.current_time  # durations in the logs and hooks
        self.shutdown_grace = shutdown_grace
        self._stopped = False

    # -- the application's side ------------------------------------------------------------

    def event_emitter(self, event_type: Any) -> EventEmitter:
        """An emitter for events of ``event_type`` (take as many as you like)."""
        return EventEmitter(self.core, event_type)

    def topic_notifier(self) -> TopicNotifier:
        """The one receiver of topic Created/Removed notifications (a second call raises)."""
        return TopicNotifier(self.core.topic_notifications())

    @property
    def connection_count(self) -> int:
        """WebSockets the app holds (accepted and not yet gone)."""
        return self.core.connection_count

    @property
    def stopped(self) -> bool:
        """True once :meth:`shutdown` finished."""
        return self._stopped

    async def shutdown(self, grace: float | None = None) -> None:
        """Refuse new connections (503), let running calls finish within ``grace``
        seconds, then close every connection with 1001 (each ASGI call then returns).

        Call it on the loop the app runs on, before the ASGI server stops (its own
        shutdown closes WebSockets with its own code, 1012 on uvicorn). Idempotent.
        """
        grace = self.shutdown_grace if grace is None else grace
        for step in self.core.shutdown(grace):
            _wake_all(self.core)  # connections the core closed: their writers send the close
            with anyio.move_on_after(step.timeout):
                while not step.done():
                    await anyio.sleep(0.01)
        for session in list(self.core.sessions):
            connection = session.adapter
            if isinstance(connection, _Connection):
                connection.cancel()
        self.core.stopped()
        self._stopped = True

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        """For a framework's lifespan: ``FastAPI(lifespan=hardlight_app.lifespan)``."""
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await self.shutdown()

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "http":
            await _plain_response(send, 426, "this is a HardLight (hl/2) WebSocket endpoint")
        else:
            raise HardLightError(f"unsupported ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                self.core.accepting = True
                self._stopped = False
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    log.exception("hardlight shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message.get("type") != "websocket.connect":
            return  # disconnected before the handshake
        headers = tuple(
            (bytes(name).lower(), bytes(value)) for name, value in scope.get("headers", ())
        )
        subprotocol, offered = _subprotocol(scope, headers)
        if subprotocol is None:
            shown = "none" if offered is None else offered
            reason = f"subprotocol must be exactly hl/2 (or hl.2 from a browser), got {shown}"
            await _refuse(scope, send, 400, reason)
            return
        level = parse_compression_level(header_value(list(headers), b"x-hl-compress"))
        origin = header_value(list(headers), b"origin")
        session = self.core.open_message_session(
            _request_target(scope),
            headers,
            origin.decode("latin-1") if origin is not None else None,
            level,
            peer=_peer(scope),
        )
        assert isinstance(session.connection, MessageConnection)
        refusal = session.connection.refusal
        if refusal is not None:
            await _refuse(scope, send, *refusal)
            return
        connection = _Connection(session, send)
        session.adapter = connection
        try:
            await send(
                {
                    "type": "websocket.accept",
                    "subprotocol": subprotocol.decode("ascii"),
                    "headers": [(b"x-hl-compress", str(level).encode("ascii"))],
                }
            )
        except BaseException:
            session.connection_lost()
            raise
        await connection.serve(receive)


def _subprotocol(
    scope: Scope, headers: tuple[tuple[bytes, bytes], ...]
) -> tuple[bytes | None, str | None]:
    """The subprotocol to accept (None to refuse) and what was offered, for the message.

    The raw header when the server passes it on (uvicorn's websockets, hypercorn); else
    the scope's list (uvicorn's wsproto keeps the header to itself). Like the reference,
    exactly one name is accepted: a list such as ``hl/1, hl/2`` is refused.
    """
    if header_value(list(headers), b"sec-websocket-protocol") is not None:
        offered = header_value(list(headers), b"sec-websocket-protocol")
        assert offered is not None
        return chosen_subprotocol(list(headers)), offered.decode("latin-1")
    listed = [str(name) for name in scope.get("subprotocols") or ()]
    if not listed:
        return None, None
    shown = ", ".join(listed)
    if len(listed) == 1 and listed[0].encode("latin-1") in SUBPROTOCOLS:
        return listed[0].encode("latin-1"), shown
    return None, shown


def _spawn(coroutine: Coroutine[Any, Any, None]) -> Callable[[], object]:
    connection = _feeding.get()
    if connection is None:
        coroutine.close()
        raise HardLightError("a handler call arrived outside a connection's reader")
    return connection.spawn(coroutine)


def _output_ready(session: ServerSession) -> None:
    connection = session.adapter
    if isinstance(connection, _Connection):
        connection.wake.set()


def _wake_all(core: ServerCore) -> None:
    for session in list(core.sessions):
        _output_ready(session)


async def _refuse(scope: Scope, send: Send, status: int, reason: str) -> None:
    """Answer the upgrade with ``status`` and ``reason`` (403 without the extension)."""
    log.debug("refused a WebSocket from %s: %d %s", _peer(scope), status, reason)
    if HTTP_RESPONSE_EXTENSION in (scope.get("extensions") or {}):
        body = reason.encode("utf-8")
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": _truncate_reason(reason)})


async def _plain_response(send: Send, status: int, text: str) -> None:
    body = text.encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"upgrade", b"websocket"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _request_target(scope: Scope) -> str:
    """The request target as the other adapters see it: raw path and query string."""
    raw = scope.get("raw_path")
    path = bytes(raw).decode("latin-1") if raw else str(scope.get("path", "/"))
    query = scope.get("query_string") or b""
    return f"{path}?{bytes(query).decode('latin-1')}" if query else path


def _peer(scope: Scope) -> Any:
    client = scope.get("client")
    return tuple(client) if client else None


def _truncate_reason(reason: str) -> str:
    """A close reason fits in 123 bytes of UTF-8 (RFC 6455 5.5)."""
    data = reason.encode("utf-8")[:123]
    return data.decode("utf-8", errors="ignore")
