"""Connection states and the one table of transitions both roles are judged by.

A transition that is not in :data:`TRANSITIONS` is a :class:`LocalProtocolError`:
the connection object refuses to be driven into an impossible state.
"""

from __future__ import annotations

import enum

from ._errors import LocalProtocolError

__all__ = ["TRANSITIONS", "ConnectionState", "Trigger", "transition"]


class ConnectionState(enum.Enum):
    """Where a connection is in its life."""

    CONNECTING = "connecting"  # HTTP upgrade not finished
    OPEN = "open"  # HardLight messages flow
    CLOSING = "closing"  # a close frame was sent or received, waiting for the other
    CLOSED = "closed"  # finished cleanly (or refused); nothing more to read
    ERROR = "error"  # a protocol error, a peer that stopped reading or a lost socket ended it

    #: True in the end states (CLOSED, ERROR): nothing more is read or sent. A plain
    #: attribute of each member (set below), not a property: it is read on every message.
    ended: bool


class Trigger(enum.Enum):
    """What moves a connection between states."""

    ACCEPTED = "handshake accepted"
    REFUSED = "handshake refused"
    CLOSE_SENT = "close frame sent"
    CLOSE_RECEIVED = "close frame received"
    CLOSE_COMPLETED = "close handshake completed"
    PROTOCOL_ERROR = "protocol error"
    PEER_NOT_READING = "peer stopped reading"
    CONNECTION_LOST = "connection lost"


_ENDED = frozenset({ConnectionState.CLOSED, ConnectionState.ERROR})
for _member in ConnectionState:
    _member.ended = _member in _ENDED
del _member


S, T = ConnectionState, Trigger
TRANSITIONS: dict[tuple[ConnectionState, Trigger], ConnectionState] = {
    (S.CONNECTING, T.ACCEPTED): S.OPEN,
    (S.CONNECTING, T.REFUSED): S.CLOSED,
    (S.CONNECTING, T.PROTOCOL_ERROR): S.ERROR,
    (S.CONNECTING, T.CONNECTION_LOST): S.ERROR,
    (S.CONNECTING, T.PEER_NOT_READING): S.ERROR,
    (S.CONNECTING, T.CLOSE_SENT): S.CLOSED,
    (S.OPEN, T.CLOSE_SENT): S.CLOSING,
    # a close frame received while open is echoed at once: the handshake is complete
    (S.OPEN, T.CLOSE_RECEIVED): S.CLOSED,
    (S.OPEN, T.PROTOCOL_ERROR): S.ERROR,
    (S.OPEN, T.PEER_NOT_READING): S.ERROR,
    (S.OPEN, T.CONNECTION_LOST): S.ERROR,
    (S.CLOSING, T.CLOSE_COMPLETED): S.CLOSED,
    (S.CLOSING, T.CLOSE_RECEIVED): S.CLOSED,
    (S.CLOSING, T.PROTOCOL_ERROR): S.ERROR,
    (S.CLOSING, T.PEER_NOT_READING): S.ERROR,
    (S.CLOSING, T.CONNECTION_LOST): S.CLOSED,
    (S.CLOSED, T.CONNECTION_LOST): S.CLOSED,
    (S.ERROR, T.CONNECTION_LOST): S.ERROR,
}
del S, T


def transition(state: ConnectionState, trigger: Trigger) -> ConnectionState:
    """The state after ``trigger`` in ``state``; LocalProtocolError if not allowed."""
    try:
        return TRANSITIONS[state, trigger]
    except KeyError:
        raise LocalProtocolError(f"cannot {trigger.value!r} in state {state.value!r}") from None
