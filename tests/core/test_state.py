"""The lifecycle tables: connection states, session states and the client driver's phases.

Every (state, trigger) pair is either in its table or refused with LocalProtocolError;
end states are absorbing; and the objects that use the tables obey them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hl_pair import drain, open_pair

from hardlight_apps.counter import Counter
from hardlight_core import LocalProtocolError
from hardlight_core._client_driver import _PHASES, ClientDriver, ClientPhase
from hardlight_core._config import ReconnectPolicy
from hardlight_core._connection import ServerConnection
from hardlight_core._events import ConnectionClosed
from hardlight_core._limits import Limits
from hardlight_core._session import (
    SESSION_TRANSITIONS,
    ClientMessageSession,
    ServerMessageSession,
    SessionState,
    SessionTrigger,
)
from hardlight_core._state import TRANSITIONS, ConnectionState, Trigger, transition

ALL_PAIRS = list(itertools.product(ConnectionState, Trigger))
ENDED = {ConnectionState.CLOSED, ConnectionState.ERROR}


# -- ConnectionState / TRANSITIONS ---------------------------------------------------------------


@pytest.mark.parametrize(("state", "trigger"), ALL_PAIRS, ids=lambda x: x.name)
def test_every_pair_is_in_the_table_or_refused(state: ConnectionState, trigger: Trigger) -> None:
    if (state, trigger) in TRANSITIONS:
        assert transition(state, trigger) is TRANSITIONS[state, trigger]
    else:
        with pytest.raises(LocalProtocolError, match=state.value):
            transition(state, trigger)


def test_ended_is_exactly_closed_and_error() -> None:
    assert {s for s in ConnectionState if s.ended} == ENDED


@pytest.mark.parametrize("state", sorted(ENDED, key=lambda s: s.name), ids=lambda s: s.name)
def test_end_states_are_absorbing(state: ConnectionState) -> None:
    for trigger in Trigger:
        if (state, trigger) in TRANSITIONS:
            assert transition(state, trigger) is state
    # the socket going away after the end is harmless: it is the only trigger accepted
    assert {t for s, t in TRANSITIONS if s is state} == {Trigger.CONNECTION_LOST}


def test_no_transition_leaves_an_end_state_or_returns_to_connecting() -> None:
    for (before, _trigger), after in TRANSITIONS.items():
        if before.ended:
            assert after is before
        assert after is not ConnectionState.CONNECTING


def test_every_state_is_reachable_from_connecting() -> None:
    reached = {ConnectionState.CONNECTING}
    frontier = [ConnectionState.CONNECTING]
    while frontier:
        state = frontier.pop()
        for (before, _t), after in TRANSITIONS.items():
            if before is state and after not in reached:
                reached.add(after)
                frontier.append(after)
    assert reached == set(ConnectionState)


def test_every_live_state_can_end_on_a_lost_socket_or_an_error() -> None:
    for state in ConnectionState:
        if not state.ended:
            assert transition(state, Trigger.CONNECTION_LOST).ended
            assert transition(state, Trigger.PROTOCOL_ERROR) is ConnectionState.ERROR


def test_the_connection_obeys_the_table() -> None:
    # a transition not in the table raises instead of changing the state
    _client, server = open_pair()
    server.close()
    assert server.state is ConnectionState.CLOSING
    with pytest.raises(LocalProtocolError):
        server.close()  # (CLOSING, CLOSE_SENT) is not in the table
    assert server.state is ConnectionState.CLOSING
    server.receive_data(b"")  # (CLOSING, CONNECTION_LOST) -> CLOSED
    assert server.state is ConnectionState.CLOSED
    assert drain(server) == [ConnectionClosed(1006, "connection lost (EOF without a close frame)")]
    server.receive_data(b"")  # absorbed: no second ConnectionClosed
    assert drain(server) == []
    with pytest.raises(LocalProtocolError):
        server.accept()


def test_accept_is_refused_before_a_request_and_twice() -> None:
    server = ServerConnection()
    with pytest.raises(LocalProtocolError):
        server.accept()
    _client, server = open_pair()
    with pytest.raises(LocalProtocolError):
        server.accept()
    with pytest.raises(LocalProtocolError):
        server.refuse()


# -- SESSION_TRANSITIONS -------------------------------------------------------------------------


def test_session_table_covers_every_pair_and_ended_is_absorbing() -> None:
    assert set(SESSION_TRANSITIONS) == set(itertools.product(SessionState, SessionTrigger))
    assert SESSION_TRANSITIONS[SessionState.ACTIVE, SessionTrigger.END] is SessionState.ENDED
    assert SESSION_TRANSITIONS[SessionState.ENDED, SessionTrigger.END] is SessionState.ENDED


@pytest.mark.parametrize("make", [ServerMessageSession, ClientMessageSession])
def test_sessions_follow_their_table(
    make: type[ServerMessageSession | ClientMessageSession],
) -> None:
    session = make()
    assert session.state is SessionState.ACTIVE and session.active
    session.end()
    assert session.state is SessionState.ENDED and not session.active
    session.end()  # absorbing
    assert session.state is SessionState.ENDED


# -- the client driver's phases ------------------------------------------------------------------

PHASE_TRIGGERS = sorted({t for _p, t in _PHASES})


@dataclass(frozen=True)
class _Settings:
    host_port: tuple[str, int] = ("localhost", 9000)
    compression_level: int = 6
    limits: Limits | None = None
    call_timeout: float | None = 30.0
    connect_timeout: float = 10.0
    reconnect: ReconnectPolicy | None = None


def _driver(phase: ClientPhase) -> ClientDriver:
    driver = ClientDriver(Counter, _Settings())
    driver.phase = phase
    return driver


def test_phase_triggers_are_the_ones_the_driver_uses() -> None:
    assert PHASE_TRIGGERS == ["connect", "disconnect", "lost", "opened"]


@pytest.mark.parametrize(
    ("phase", "trigger"), list(itertools.product(ClientPhase, PHASE_TRIGGERS)), ids=str
)
def test_every_phase_pair_is_in_the_table_or_refused(phase: ClientPhase, trigger: str) -> None:
    driver = _driver(phase)
    if (phase, trigger) in _PHASES:
        driver._move(trigger)
        assert driver.phase is _PHASES[phase, trigger]
    else:
        with pytest.raises(LocalProtocolError, match=phase.value):
            driver._move(trigger)
        assert driver.phase is phase


def test_disconnect_always_leads_to_idle_and_only_connect_leaves_it() -> None:
    for phase in ClientPhase:
        assert _PHASES[phase, "disconnect"] is ClientPhase.IDLE
    leaving_idle = {t for (p, t), after in _PHASES.items() if p is ClientPhase.IDLE and after
                    is not ClientPhase.IDLE}
    assert leaving_idle == {"connect"}


def test_only_a_connecting_client_opens() -> None:
    assert {p for p, t in _PHASES if t == "opened"} == {ClientPhase.CONNECTING}


def test_driver_refuses_a_second_connection_while_open() -> None:
    driver = _driver(ClientPhase.OPEN)
    from concurrent.futures import Future

    with pytest.raises(LocalProtocolError):
        driver.new_connection(Future())
    assert driver.phase is ClientPhase.OPEN and driver.core is None
