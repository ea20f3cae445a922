"""The server engine: handshake policy, call outcomes, state before response, fan-out."""

from __future__ import annotations

from typing import Any

import pytest
from hl_pair import KEY

from hardlight_apps.counter import Counter, CounterEvent, CounterHandler, Incremented
from hardlight_core import HandshakeInfo, Refuse, Topic
from hardlight_core._client_core import CallOutcome, ClientCore, StateUpdated
from hardlight_core._codec import encode
from hardlight_core._server_core import ServerCore, ServerSession
from hardlight_core._topics import TopicCreated, TopicRemoved


def _connect(
    core: ServerCore, origin: str | None = None, level: int = 6
) -> tuple[ClientCore, ServerSession]:
    client = ClientCore(Counter, "localhost", compression_level=level, random_bytes=lambda n: KEY)
    session = core.open_session()
    request = client.data_to_send()
    if origin is not None:
        request = request.replace(b"\r\n\r\n", f"\r\nOrigin: {origin}\r\n\r\n".encode())
    session.receive_data(request, 0.0)
    client.receive_data(session.data_to_send(), 0.0)
    return client, session


def _call(client: ClientCore, session: ServerSession, method: str, *args: Any) -> list[Any]:
    client.start_call(method, args)
    for call in session.receive_data(client.data_to_send(), 0.0):
        call.run_inline()
    return client.receive_data(session.data_to_send(), 0.0)


def test_state_change_arrives_before_the_response() -> None:
    core = ServerCore(CounterHandler)
    client, session = _connect(core)
    outcomes = _call(client, session, "increment", 5)
    assert [type(o) for o in outcomes] == [StateUpdated, CallOutcome]
    assert client.state.counter == 5
    assert [type(o) for o in _call(client, session, "increment", 0)] == [CallOutcome]


def test_handler_failures_and_undecodable_calls() -> None:
    core = ServerCore(CounterHandler)
    client, session = _connect(core)
    client.connection.start_call(b"\x09" + b"\0" * 7)  # unknown tag
    client._methods[0] = "get"
    session.receive_data(client.data_to_send(), 0.0)
    (outcome,) = client.receive_data(session.data_to_send(), 0.0)
    assert type(outcome.error).__name__ == "ServerDecodeError"


def test_max_connections_origin_and_authentication() -> None:
    core = ServerCore(CounterHandler, max_connections=1)
    _connect(core)
    client, _ = _connect(core)
    assert client.connection.state.value == "closed"  # 503, refused

    core = ServerCore(CounterHandler, allowed_origins=frozenset({"https://ok.example"}))
    assert _connect(core, "https://ok.example")[0].connection.state.value == "open"
    assert _connect(core, "https://evil.example")[0].connection.state.value == "closed"

    seen: list[HandshakeInfo] = []

    def authenticate(info: HandshakeInfo) -> str:
        seen.append(info)
        if info.header("x-hl-compress") != "6":
            raise Refuse("level 6 only", 403)
        return "user-1"

    core = ServerCore(CounterHandler, authenticate=authenticate)
    client, session = _connect(core)
    assert session.handler.auth == "user-1" and seen[0].path == "/"


def test_emit_packs_once_per_level_and_reaches_only_subscribers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hardlight_core._server_core as engine

    core = ServerCore(CounterHandler)
    changes: list[Any] = []
    core.on_topic = changes.append
    pairs = [_connect(core) for _ in range(5)]
    for client, session in pairs[:4]:
        _call(client, session, "new_counter")
    topics = {s.handler.state.topic for _c, s in pairs[:4]}
    calls = []
    original = engine.pack
    monkeypatch.setattr(engine, "pack", lambda m, lv: calls.append(lv) or original(m, lv))
    topic = next(iter(topics))
    subscribed = [s for _c, s in pairs if s.handler.state.topic == topic]
    delivered = core.emit(topic, encode(Incremented(to=1, from_=0), CounterEvent))
    assert delivered == len(subscribed)
    assert calls == [6]  # one compression level in use: packed once
    assert any(isinstance(c, TopicCreated) for c in changes)
    for _client, session in pairs:
        session.connection_lost()
    assert any(isinstance(c, TopicRemoved) for c in changes)
    assert not core.switch.topics
    assert core.emit(Topic.from_str("nobody"), b"") == 0


def test_emit_frames_once_per_level_and_every_level_decodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hardlight_core._server_core as engine

    core = ServerCore(CounterHandler)
    pairs = [_connect(core, level=level) for level in (0, 6, 0, 6, 9)]
    topic = Topic.from_str("everyone")
    for _client, session in pairs:
        core.subscribe(session, topic)
    framed: list[bytes] = []
    original = engine.server_frame
    monkeypatch.setattr(engine, "server_frame", lambda p: framed.append(p) or original(p))
    payload = encode(Incremented(to=2, from_=1), CounterEvent)
    assert core.emit(topic, payload) == 5
    assert len(framed) == 3  # levels 0, 6 and 9: one frame each, shared by the connections
    outgoing = [session.data_to_send() for _c, session in pairs]
    assert outgoing[0] == outgoing[2] and outgoing[1] == outgoing[3]
    for (client, _session), data in zip(pairs, outgoing, strict=True):
        (event,) = client.receive_data(data, 0.0)
        assert event.topic == topic and event.payload == payload


def test_open_sessions_counts_accepted_connections_until_they_end() -> None:
    core = ServerCore(CounterHandler, max_connections=2)
    assert core.open_sessions == 0
    first = _connect(core)[1]
    second = _connect(core)[1]
    assert core.open_sessions == 2
    refused_client, refused = _connect(core)
    assert refused_client.connection.state.value == "closed"
    assert core.open_sessions == 2  # a refused handshake never counted
    first.connection_lost()
    first.connection_lost()  # twice: still counted once
    assert core.open_sessions == 1
    third_client, _third = _connect(core)
    assert third_client.connection.state.value == "open"  # the freed place is usable
    second.close()
    refused.connection_lost()
    assert core.open_sessions == 2  # closing, not yet closed
    second.connection_lost()
    assert core.open_sessions == 1


def test_twenty_copies_of_an_in_flight_id_run_the_handler_once() -> None:
    # the reference (recorded-traffic README, fact 7): 20 copies of id 5 in one write give
    # one answer and counter +1; the id stays in flight until its answer is taken to be
    # written, and can be used again after that
    from hardlight_core._envelope import RPCRequest, RPCResponse, pack, unpack_server_message
    from hardlight_core._framing import FrameReader, MaskKeySource, Opcode, frame_bytes

    core = ServerCore(CounterHandler)
    _client, session = _connect(core)
    request = pack(RPCRequest(5, core.spec.encode_call("increment", 1)), 6)
    frame = frame_bytes(Opcode.BINARY, request, mask=True, random_bytes=MaskKeySource())
    reader = FrameReader(expect_masked=False, max_message_size=1 << 20)

    def answers_to_5() -> int:
        messages = [unpack_server_message(f.payload) for f in reader.feed(session.data_to_send())]
        return sum(isinstance(m, RPCResponse) and m.id == 5 for m in messages)

    for call in session.receive_data(frame * 20, 0.0):
        call.run_inline()
    assert session.handler.state.counter == 1
    assert session.connection.session.duplicate_calls == 19
    assert answers_to_5() == 1
    for call in session.receive_data(frame, 0.0):  # free again: served
        call.run_inline()
    assert session.handler.state.counter == 2
    assert answers_to_5() == 1


def test_only_plain_coroutines_without_await_are_run_inline() -> None:
    import functools

    from hardlight_core._server_core import cannot_suspend

    async def answers() -> int:
        return 1

    async def waits() -> int:
        await answers()
        return 1

    async def loops(xs: Any) -> int:
        async for _ in xs:
            pass
        return 1

    def sync_wrapper(*args: Any) -> Any:  # a decorator's wrapper: returns a coroutine
        return waits()

    @functools.wraps(answers)
    async def async_wrapper() -> int:
        return await answers()

    assert cannot_suspend(answers)
    assert not cannot_suspend(waits)
    assert not cannot_suspend(loops)
    assert not cannot_suspend(sync_wrapper)
    assert not cannot_suspend(functools.wraps(answers)(sync_wrapper))
    assert not cannot_suspend(async_wrapper)
    assert not cannot_suspend(lambda: None)


def test_a_method_replaced_on_the_instance_is_not_run_inline() -> None:
    core = ServerCore(CounterHandler)
    client, session = _connect(core)
    client.start_call("get", ())
    (call,) = session.receive_data(client.data_to_send(), 0.0)
    assert call.never_suspends  # CounterHandler.get has no await
    call.run_inline()

    async def get() -> int:
        return 7

    session.handler.get = get  # not the analysed function any more
    client.start_call("get", ())
    (call,) = session.receive_data(client.data_to_send(), 0.0)
    assert not call.never_suspends
    call.run_inline()
