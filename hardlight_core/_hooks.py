"""What a server reports about its connections and calls: for metrics, tracing and logs.

The server driver (:mod:`._server_core`) decides when each hook runs, so every adapter
reports the same things at the same moments:

* ``on_connect(ConnectionInfo)``: a handshake was accepted (``code`` is None);
* ``on_refuse(ConnectionInfo)``: a handshake was refused (``code`` is the HTTP status,
  ``reason`` the text sent);
* ``on_disconnect(ConnectionInfo)``: an accepted connection ended (``code`` is the close
  code, None when it ended without a close frame; ``duration`` how long it was open);
* ``on_call_start(CallInfo)``: a call arrived (before the handler runs);
* ``on_call_end(CallInfo)``: it was answered, or will never be (``outcome``, ``duration``).

The same :class:`CallInfo` object is passed to ``on_call_start`` and ``on_call_end`` of a
call (its ``duration``, ``outcome`` and ``error`` filled in at the end), so a hook may keep
it as a key between the two. Hooks run inline, on the thread or task that drives the
connection (under the server's lock on the threads adapter): keep them short. A hook
that raises is logged and ignored; it never breaks a call or a connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CallInfo", "ConnectionInfo", "ServerHooks", "call_outcomes"]

#: the outcomes a call can end with, besides the names of ``RpcHandlerError`` members
#: ("HandlerPanicked", "ServerEncodeError", "ServerDecodeError", ...)
call_outcomes = (
    "ok",  # the handler returned and its answer was queued
    "cancelled",  # the handler was cancelled (its connection ended, or the server stopped)
    "unanswered",  # the handler finished after its connection had ended
    "internal error",  # the server failed answering it (its connection is closed 1011)
)


@dataclass(slots=True, eq=False)
class CallInfo:
    """One call, as the hooks see it (the same object at its start and its end)."""

    #: the service's class name
    service: str
    #: the method's name ("" when the request did not decode)
    method: str
    call_id: int
    #: the peer's address, as the adapter reported it (None if unknown)
    peer: Any
    #: the server clock when the call arrived (None when the adapter has no clock)
    started: float | None
    #: seconds from arrival to the end (set at the end; None without a clock)
    duration: float | None = None
    #: how it ended: "ok", an RpcHandlerError name, "cancelled", "unanswered" or
    #: "internal error" (None until it ended)
    outcome: str | None = None
    #: what the handler raised, if it raised
    error: BaseException | None = None

    @property
    def failed(self) -> bool:
        """True once ended with anything but "ok"."""
        return self.outcome is not None and self.outcome != "ok"


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One connection, as the hooks see it."""

    peer: Any
    #: the request path of the upgrade (None if the handshake never arrived)
    path: str | None
    #: on_refuse: the HTTP status; on_disconnect: the close code (None: no close frame)
    code: int | None = None
    reason: str = ""
    #: on_disconnect: seconds the connection was open (None without a clock)
    duration: float | None = None


ConnectionHook = Callable[[ConnectionInfo], object]
CallHook = Callable[[CallInfo], object]


@dataclass(frozen=True, slots=True)
class ServerHooks:
    """Callbacks for a server's connections and calls; any may be left None.

    ``Server(config, Handler, hooks=ServerHooks(on_call_end=record))`` or
    ``server.add_hooks(ServerHooks(...))`` on any adapter.
    """

    on_connect: ConnectionHook | None = None
    on_refuse: ConnectionHook | None = None
    on_disconnect: ConnectionHook | None = None
    on_call_start: CallHook | None = None
    on_call_end: CallHook | None = None
