"""Offline replay of the sessions recorded from the Rust reference, through our cores.

Server side: the recorded client bytes go into our ``ServerCore`` running the Python
app; the messages it produces must be the reference's (compared decoded, not as
compressed bytes). Client side: the recorded server bytes go into our ``ClientCore``
issuing the recorded calls; results, events and the state mirror must match. Chunks
are fed at their recorded boundaries and again byte by byte.

Where this port differs from the reference on purpose, the replay names the
divergence (``DIVERGENCES``) and checks our behaviour instead.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardlight_apps import chat, counter, pet, todo
from hardlight_core import (
    CallOutcome,
    ClientCore,
    Err,
    EventDelivered,
    HandlerCall,
    NewEvent,
    RPCResponse,
    ServerCore,
    ServerSession,
    StateChange,
    StateMirror,
    Topic,
    TopicCreated,
    decode_client_message,
    decode_server_message,
    encode,
)
from hardlight_core._framing import FrameReader, Opcode
from hardlight_core._handshake import parse_compression_level

__all__ = ["DIVERGENCES", "ReplayResult", "replay_dir", "replay_session"]

DIVERGENCES = {
    "refused-handshake-closes": (
        "a handshake with a wrong or missing subprotocol: the reference answers 400 and then "
        "serves calls on the socket; we answer 400 with a reason and close, serving nothing"
    ),
    "protocol-error-closes": (
        "after a WebSocket protocol error the reference goes silent and never closes; we send "
        "a close frame with the RFC 6455 code (1002/1007) and close"
    ),
    "close-handshake-closes": (
        "after echoing a close frame the reference keeps the TCP connection; we close it"
    ),
    "own-joined-delivered": (
        "chat: an event a handler emits right after subscribing its own connection may be lost "
        "by the reference; ours always reaches that connection"
    ),
    "checked-build-panics": (
        "the reference built with overflow checks answers HandlerPanicked to a counter "
        "underflow; our counter wraps like the release build (the recorded release-server "
        "session is replayed exactly)"
    ),
    "state-change-before-response": (
        "we queue a call's state change (and its events) before its response; the reference "
        "sends them from other tasks, so a client that reset the connection right after the "
        "response never got them from the reference"
    ),
    "removed-on-disconnect": (
        "the reference never unsubscribes a closed connection; ours does and reports "
        "TopicRemoved (not visible in the bytes)"
    ),
}

APPS: dict[str, Any] = {
    "counter": (counter.Counter, counter.CounterHandler, counter.CounterState, None),
    "pet": (pet.PetService, pet.PetHandler, pet.PetState, None),
    "todo": (todo.Todo, todo.TodoHandler, todo.TodoState, None),
    "chat": (chat.Chat, chat.ChatHandler, chat.ChatState, chat.ChatEvent),
}


@dataclass
class ReplayResult:
    """What replaying one session found."""

    name: str
    failures: list[str] = field(default_factory=list)
    divergences: set[str] = field(default_factory=set)
    checked: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing differed except named divergences."""
        return not self.failures


@dataclass
class _Conn:
    conn_id: int
    c2s: list[tuple[float, bytes]] = field(default_factory=list)
    s2c: list[tuple[float, bytes]] = field(default_factory=list)
    c2s_eof: float | None = None
    decoded: dict[str, Any] = field(default_factory=dict)


def _load(path: Path) -> tuple[str, dict[int, _Conn], list[tuple[float, int, str, bytes | None]]]:
    name = path.name.removesuffix(".jsonl")
    conns: dict[int, _Conn] = {}
    timeline: list[tuple[float, int, str, bytes | None]] = []
    with path.open() as f:
        for line in f:
            item = json.loads(line)
            conn = conns.setdefault(item["conn"], _Conn(item["conn"]))
            if "hex" in item:
                data = bytes.fromhex(item["hex"])
                (conn.c2s if item["dir"] == "c2s" else conn.s2c).append((item["t"], data))
                timeline.append((item["t"], item["conn"], item["dir"], data))
            elif item.get("event") == "eof" and item.get("dir") == "c2s":
                conn.c2s_eof = item["t"]
                timeline.append((item["t"], item["conn"], "c2s", None))
    decoded_path = path.with_name(name + ".decoded.json")
    if decoded_path.exists():
        with decoded_path.open() as f:
            for c in json.load(f)["connections"]:
                if c["conn"] in conns:
                    conns[c["conn"]].decoded = c
    timeline.sort(key=lambda x: x[0])
    return name, conns, timeline


def _app_of(name: str) -> str:
    for app in ("chat", "pet", "todo"):
        if name.startswith(app):
            return app
    return "counter"


def _recorded_messages(conn: _Conn) -> list[Any]:
    out = []
    for frame in conn.decoded.get("s2c_frames") or []:
        if frame.get("inflated_hex") is not None:
            try:
                out.append(decode_server_message(bytes.fromhex(frame["inflated_hex"])))
            except Exception:
                continue
    return out


def _split_output(data: bytes) -> tuple[bytes, list[tuple[Opcode, bytes]]]:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return data, []
    reader = FrameReader(expect_masked=False, max_message_size=1 << 30)
    try:
        frames = reader.feed(rest)
    except Exception:
        return head, []
    return head, [(f.opcode, f.payload) for f in frames]


def _drive(session: ServerSession, calls: list[HandlerCall]) -> None:
    for call in calls:
        call.run_inline()  # replayed handlers never await


def _chunks(data: bytes, byte_by_byte: bool) -> Iterator[bytes]:
    if byte_by_byte:
        for i in range(len(data)):
            yield data[i : i + 1]
    else:
        yield data


def _replay_server(
    name: str,
    app: str,
    conns: dict[int, _Conn],
    timeline: list[tuple[float, int, str, bytes | None]],
    byte_by_byte: bool,
    result: ReplayResult,
) -> None:
    _service, handler_base, state_type, _event = APPS[app]
    topics: deque[bytes] = deque()
    for conn in conns.values():
        for message in _recorded_messages(conn):
            if isinstance(message, StateChange):
                for update in message.updates:
                    if app == "counter" and update.index == 1:
                        topic = StateMirror(state_type)
                        topic.apply([update])
                        if topic.value.topic.inner:
                            topics.append(topic.value.topic.inner)
    attrs: dict[str, Any] = {}
    if app == "counter":
        last = [b"\x00"]

        def next_topic() -> bytes:
            # no topic update recorded means new_counter drew the same byte again
            if topics:
                last[0] = topics.popleft()
            return last[0]

        attrs["topic_source"] = staticmethod(next_topic)
    if app == "chat":
        attrs["rooms"] = chat.ChatRooms()
    handler = type(f"Replay{handler_base.__name__}", (handler_base,), attrs)
    core = ServerCore(handler)
    if app == "counter":
        greeting = encode(counter.ServerSentTest(), counter.CounterEvent)

        def on_topic(change: Any) -> None:
            if isinstance(change, TopicCreated):
                core.emit(change.topic, greeting)

        core.on_topic = on_topic
    sessions: dict[int, ServerSession] = {}
    output: dict[int, bytearray] = {}
    for _t, conn_id, direction, data in timeline:
        if direction != "c2s":
            continue
        session = sessions.get(conn_id)
        if session is None:
            session = sessions[conn_id] = core.open_session()
            output[conn_id] = bytearray()
        for chunk in _chunks(data if data is not None else b"", byte_by_byte and data is not None):
            _drive(session, session.receive_data(chunk, 0.0))
            for other_id, other in sessions.items():
                output[other_id] += other.data_to_send()
    for conn_id, conn in conns.items():
        if conn_id not in output:
            continue
        _compare_server(name, app, conn, bytes(output[conn_id]), result)


def _compare_server(
    name: str, app: str, conn: _Conn, ours_raw: bytes, result: ReplayResult
) -> None:
    head, frames = _split_output(ours_raw)
    recorded_head = (conn.decoded.get("http_response") or {}).get("start_line", "")
    ours_status = head.split(b"\r\n", 1)[0].decode("latin-1")
    where = f"conn {conn.conn_id}"
    if recorded_head and recorded_head.split(" ")[1:2] != ours_status.split(" ")[1:2]:
        result.failures.append(f"{where}: status {ours_status!r}, reference {recorded_head!r}")
        return
    if not recorded_head:
        # the reference sent no HTTP answer (plain GET): we answer 400 and close
        if not ours_status.startswith("HTTP/1.1 400"):
            result.failures.append(f"{where}: no-upgrade request answered {ours_status!r}")
        result.divergences.add("refused-handshake-closes")
        return
    ours = [decode_server_message(_inflate(p)) for op, p in frames if op is Opcode.BINARY]
    if ours_status.startswith("HTTP/1.1 400"):
        result.divergences.add("refused-handshake-closes")
        if ours:
            result.failures.append(f"{where}: {len(ours)} messages served after a 400")
        return
    expected = _recorded_messages(conn)
    closes = [p for op, p in frames if op is Opcode.CLOSE]
    recorded_close = any(f.get("opcode") == 8 for f in conn.decoded.get("s2c_frames") or [])
    if closes and not recorded_close:
        result.divergences.add("protocol-error-closes")
    if recorded_close:
        result.divergences.add("close-handshake-closes")
    if name.endswith("checked_server"):
        result.divergences.add("checked-build-panics")
        answered = Counter(m.id for m in ours if isinstance(m, RPCResponse))
        wanted = Counter(m.id for m in expected if isinstance(m, RPCResponse))
        if answered != wanted:
            result.failures.append(f"{where}: answered ids {answered}, reference {wanted}")
        return
    _compare_messages(where, app, conn, ours, expected, result)


def _inflate(payload: bytes) -> bytes:
    from hardlight_core import inflate

    return inflate(payload)


def _compare_messages(
    where: str, app: str, conn: _Conn, ours: list[Any], expected: list[Any], result: ReplayResult
) -> None:
    def responses(ms: list[Any]) -> Counter[tuple[int, Any]]:
        return Counter((m.id, _hashable(m.output)) for m in ms if isinstance(m, RPCResponse))

    def events(ms: list[Any]) -> Counter[tuple[Topic, bytes]]:
        return Counter((m.topic, m.payload) for m in ms if isinstance(m, NewEvent))

    result.checked += len(expected)
    if responses(ours) != responses(expected):
        diff = (responses(expected) - responses(ours)) + (responses(ours) - responses(expected))
        result.failures.append(f"{where}: responses differ: {sorted(diff.items())[:4]}")
    # the client reset the connection (no orderly EOF from it)
    abrupt = not any(
        e.get("event") == "eof" and e.get("dir") == "c2s"
        for e in conn.decoded.get("lifecycle") or []
    )
    ours_events, expected_events = events(ours), events(expected)
    if ours_events != expected_events:
        missing = expected_events - ours_events
        extra = ours_events - expected_events
        own_joined = app == "chat" and all(payload[:1] == b"\x00" for (_topic, payload) in extra)
        if own_joined and not missing:
            result.divergences.add("own-joined-delivered")
        elif abrupt and not missing:
            result.divergences.add("state-change-before-response")
        elif missing or not own_joined:
            result.failures.append(
                f"{where}: events differ: missing {sorted(missing.items())[:3]}, "
                f"extra {sorted(extra.items())[:3]}"
            )
        else:
            result.divergences.add("own-joined-delivered")
    _service, _handler, state_type, _event = APPS[app]
    mine, theirs = StateMirror(state_type), StateMirror(state_type)
    for m in ours:
        if isinstance(m, StateChange):
            mine.apply(m.updates)
    for m in expected:
        if isinstance(m, StateChange):
            theirs.apply(m.updates)
    if mine.value != theirs.value and abrupt:
        result.divergences.add("state-change-before-response")
    elif mine.value != theirs.value:
        result.failures.append(f"{where}: final state {mine.value!r}, reference {theirs.value!r}")


def _hashable(output: Any) -> Any:
    return ("err", output.error.name) if isinstance(output, Err) else ("ok", output.value)


def _replay_client(
    app: str,
    conn: _Conn,
    byte_by_byte: bool,
    result: ReplayResult,
    timeline: list[tuple[float, int, str, bytes | None]],
) -> None:
    request = conn.decoded.get("http_request") or {}
    headers = dict((k.lower(), v) for k, v in request.get("headers", []))
    if headers.get("sec-websocket-protocol") != "hl/2" or "x-hl-compress" not in headers:
        return  # a scripted raw client: nothing for our client machine to replay
    calls = []
    for frame in conn.decoded.get("c2s_frames") or []:
        if frame.get("opcode") != 2:
            continue
        try:
            calls.append((frame["t"], decode_client_message(bytes.fromhex(frame["inflated_hex"]))))
        except Exception:
            return
    service, _handler, state_type, event_type = APPS[app]
    key = bytes.fromhex(_b64_to_hex(headers["sec-websocket-key"]))
    core = ClientCore(
        service,
        headers.get("host", "localhost"),
        state_type=state_type,
        compression_level=parse_compression_level(headers["x-hl-compress"].encode()),
        random_bytes=lambda n: key,
    )
    spec = core.spec
    results: dict[int, list[Any]] = {}
    events: list[EventDelivered] = []
    pending_calls = deque(calls)
    where = f"client conn {conn.conn_id}"
    opened = False
    for t, conn_id, direction, data in timeline:
        if conn_id != conn.conn_id or direction != "s2c" or data is None:
            continue
        batch = []
        while opened and pending_calls and pending_calls[0][0] <= t:
            batch.append(pending_calls.popleft()[1])
        # concurrent calls take ids in task order but may reach the wire in another
        batch.sort(key=lambda message: message.id)
        for request_message in batch:
            try:
                method, args = spec.decode_call(request_message.internal)
            except Exception:
                return
            call_id = core.start_call(method.name, args)
            if call_id != request_message.id:
                return  # ids chosen by a scripted client, not by the reference client
        for chunk in _chunks(data, byte_by_byte):
            for outcome in core.receive_data(chunk, 0.0):
                if isinstance(outcome, CallOutcome):
                    results.setdefault(outcome.call_id, []).append(outcome)
                elif isinstance(outcome, EventDelivered):
                    events.append(outcome)
            opened = opened or core.connection.state.value == "open"
    expected = _recorded_messages(conn)
    answered = sum(len(v) for v in results.values())
    wanted = sum(1 for m in expected if isinstance(m, RPCResponse))
    if answered != wanted:
        result.failures.append(f"{where}: {answered} results, reference answered {wanted}")
    expected_events = [(m.topic, m.payload) for m in expected if isinstance(m, NewEvent)]
    if [(e.topic, e.payload) for e in events] != expected_events:
        result.failures.append(f"{where}: events differ from the recorded ones")
    for e in events:
        if event_type is not None:
            e.decode(event_type)  # every recorded event decodes with the app's type
    mirror = StateMirror(state_type)
    for m in expected:
        if isinstance(m, StateChange):
            mirror.apply(m.updates)
    if core.state != mirror.value:
        result.failures.append(f"{where}: mirror {core.state!r}, reference {mirror.value!r}")
    result.checked += answered + len(events)


def _b64_to_hex(value: str) -> str:
    import base64

    return base64.b64decode(value).hex()


def replay_session(path: Path, *, byte_by_byte: bool = False) -> ReplayResult:
    """Replay one ``NAME.jsonl`` (with its ``.decoded.json``) through our cores."""
    name, conns, timeline = _load(path)
    app = _app_of(name)
    result = ReplayResult(name + (" (byte by byte)" if byte_by_byte else ""))
    try:
        _replay_server(name, app, conns, timeline, byte_by_byte, result)
        for conn in conns.values():
            _replay_client(app, conn, byte_by_byte, result, timeline)
    except Exception as exc:
        result.failures.append(f"replay crashed: {type(exc).__name__}: {exc}")
    if app != "counter" or "abrupt" in name:
        result.divergences.add("removed-on-disconnect")
    return result


def replay_dir(directory: Path, *, byte_by_byte: bool = True) -> list[ReplayResult]:
    """Replay every session of a directory (at real boundaries, then byte by byte)."""
    results = []
    for path in sorted(directory.glob("*.jsonl")):
        results.append(replay_session(path))
        if byte_by_byte:
            results.append(replay_session(path, byte_by_byte=True))
    return results
