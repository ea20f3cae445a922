"""A client engine and a server engine connected in memory, driven by hypothesis.

Calls, handler completions in any order, byte deliveries in arbitrary splits, emits
and pings interleave; invariants: every call is answered exactly once (or failed when
the connection ends), no id is reused while in flight, and the state mirror equals the
server's state at the moment each response was produced.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hardlight_apps.counter import Counter, CounterEvent, CounterHandler, Incremented
from hardlight_core._client_core import CallOutcome, ClientCore, EventDelivered, StateUpdated
from hardlight_core._codec import encode
from hardlight_core._server_core import HandlerCall, ServerCore


class Engines(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server_core = ServerCore(CounterHandler)
        self.session = self.server_core.open_session()
        self.client = ClientCore(Counter, "localhost", random_bytes=lambda n: b"\x02" * n)
        self.c2s = b""
        self.s2c = b""
        self.now = 0.0
        self.handler_calls: list[HandlerCall] = []
        self.in_flight: set[int] = set()
        self.answered: dict[int, int] = {}
        self.expected_state: dict[int, Any] = {}
        self.events = 0
        self.opened = False
        self._pump_handshake()

    def _pump_handshake(self) -> None:
        self.session.receive_data(self.client.data_to_send(), self.now)
        self.client.receive_data(self.session.data_to_send(), self.now)
        self.opened = True

    @rule(method=st.sampled_from(["new_counter", "increment", "decrement", "get"]),
          amount=st.integers(0, 2**32 - 1))
    @precondition(lambda self: len(self.in_flight) < 256)
    def call(self, method: str, amount: int) -> None:
        args = (amount,) if method in ("increment", "decrement") else ()
        call_id = self.client.start_call(method, args)
        assert call_id not in self.in_flight, "id reused while in flight"
        self.in_flight.add(call_id)
        self.c2s += self.client.data_to_send()

    @rule(cut=st.integers(0, 200))
    def deliver_to_server(self, cut: int) -> None:
        chunk, self.c2s = self.c2s[:cut], self.c2s[cut:]
        if chunk:
            self.handler_calls.extend(self.session.receive_data(chunk, self.now))
        self.s2c += self.session.data_to_send()

    @rule(data=st.data())
    @precondition(lambda self: self.handler_calls)
    def complete_a_call(self, data: st.DataObject) -> None:
        call = self.handler_calls.pop(data.draw(st.integers(0, len(self.handler_calls) - 1)))
        call.run_inline()
        state = self.session.handler.state
        self.expected_state[call.call_id] = msgspec.structs.replace(state)
        self.s2c += self.session.data_to_send()

    @rule()
    def emit(self) -> None:
        topic = self.session.handler.state.topic
        self.server_core.emit(topic, encode(Incremented(to=1, from_=0), CounterEvent))
        self.s2c += self.session.data_to_send()

    @rule(cut=st.integers(0, 200))
    def deliver_to_client(self, cut: int) -> None:
        chunk, self.s2c = self.s2c[:cut], self.s2c[cut:]
        if not chunk:
            return
        outcomes = self.client.receive_data(chunk, self.now)
        for outcome in outcomes:
            if isinstance(outcome, CallOutcome):
                assert outcome.call_id in self.in_flight, "answer to a call not in flight"
                assert outcome.error is None, outcome.error
                self.in_flight.discard(outcome.call_id)
                self.answered[outcome.call_id] = self.answered.get(outcome.call_id, 0) + 1
            elif isinstance(outcome, EventDelivered):
                outcome.decode(CounterEvent)
                self.events += 1
        # the mirror is live: it matches the server's state at the last answer of the batch
        # when no state change came after that answer
        last = [o for o in outcomes if isinstance(o, CallOutcome | StateUpdated)]
        if last and isinstance(last[-1], CallOutcome):
            assert self.client.state == self.expected_state[last[-1].call_id]
        self.c2s += self.client.data_to_send()  # pongs

    @rule()
    def idle_ping(self) -> None:
        self.now += 61.0  # past the idle timeout: the server pings, the client pongs
        self.session.handle_timer(self.now)
        self.s2c += self.session.data_to_send()
        self.deliver_to_client(10**9)
        self.deliver_to_server(10**9)

    @invariant()
    def client_ids_match_the_calls_awaited(self) -> None:
        # an id is taken exactly while its call waits for an answer
        assert self.client.connection.calls_in_flight == len(self.in_flight)

    def teardown(self) -> None:
        # deliver everything, run every call: each call answered exactly once
        for _ in range(10):
            self.deliver_to_server(10**9)
            while self.handler_calls:
                call = self.handler_calls.pop()
                call.run_inline()
                self.expected_state[call.call_id] = msgspec.structs.replace(
                    self.session.handler.state
                )
                self.s2c += self.session.data_to_send()
            self.deliver_to_client(10**9)
        assert not self.in_flight, f"unanswered calls {sorted(self.in_flight)}"
        # closing fails nothing silently: the pending set is empty and the close completes
        self.client.close()
        self.session.receive_data(self.client.data_to_send(), self.now)
        self.client.receive_data(self.session.data_to_send(), self.now)
        assert self.session.finished


Engines.TestCase.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
test_engines = Engines.TestCase
