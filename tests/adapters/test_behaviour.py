"""One behaviour suite for every (server adapter, client adapter) pair, over TLS."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from hl_harness import ADAPTERS, Probe, ProbeHandler, RunningServer, running

from hardlight_conformance._live import LiveClient
from hardlight_core import (
    CallTimeout,
    ClientNotConnected,
    ConnectionRefused,
    HandlerPanicked,
    HardLightError,
    Refuse,
)
from hardlight_support import CertificateMismatch, ClientConfig, ClientTLS, ServerConfig, ServerTLS

PAIRS = [(s, c) for s in ADAPTERS for c in ADAPTERS]
WAIT = 10.0


def _ids(pair: tuple[str, str]) -> str:
    return f"{pair[0]}_server-{pair[1]}_client"


@pytest.fixture(params=PAIRS, ids=_ids)
def pair(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def probe_server(pair: tuple[str, str]) -> Iterator[RunningServer]:
    with running(pair[0], ServerConfig.self_signed("localhost:0"), ProbeHandler) as server:
        yield server


def _client(server: RunningServer, adapter: str, **overrides: Any) -> LiveClient:
    fingerprint = server.config.fingerprint
    assert fingerprint is not None
    config = ClientConfig.pinned(
        f"localhost:{server.port}", fingerprint, call_timeout=WAIT, connect_timeout=WAIT
    )
    if overrides:
        config = ClientConfig(**{**config.__dict__, **overrides})
    return LiveClient(adapter, Probe, config)


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, WAIT * 3))


def _eventually(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_handler_exception_answers_handler_panicked(
    probe_server: RunningServer, pair: tuple[str, str]
) -> None:
    async def go() -> None:
        client = _client(probe_server, pair[1])
        await client.connect()
        try:
            with pytest.raises(HandlerPanicked):
                await client.call("boom")
            assert await client.call("echo", 7) == 7  # the connection keeps working
        finally:
            await client.disconnect()

    _run(go())


def test_per_call_timeout(probe_server: RunningServer, pair: tuple[str, str]) -> None:
    async def go() -> None:
        client = _client(probe_server, pair[1])
        await client.connect()
        try:
            with pytest.raises(CallTimeout):
                await client.call("wait", 2000, timeout=0.2)
            assert await client.call("echo", 3) == 3
        finally:
            await client.disconnect()

    _run(go())


def test_disconnect_mid_call_fails_the_call_and_the_server_cleans_up(
    probe_server: RunningServer, pair: tuple[str, str]
) -> None:
    async def go() -> None:
        client = _client(probe_server, pair[1])
        await client.connect()
        pending = asyncio.ensure_future(client.call("wait", 5000))
        await asyncio.sleep(0.2)
        await client.disconnect()
        with pytest.raises(ClientNotConnected):
            await pending

    _run(go())
    _eventually(lambda: probe_server.connection_count == 0, "server kept the connection")


def test_shutdown_lets_running_calls_finish_then_closes(pair: tuple[str, str]) -> None:
    server = RunningServer(pair[0], ServerConfig.self_signed("localhost:0"), ProbeHandler)

    async def go() -> None:
        client = _client(server, pair[1])
        await client.connect()
        pending = asyncio.ensure_future(client.call("wait", 300))
        for _ in range(500):  # the call must be running before the stop, or there is no race
            if server.server.core.running_calls:
                break
            await asyncio.sleep(0.01)
        stopper = threading.Thread(target=server.stop, args=(3.0,))
        stopper.start()
        assert await pending == 300  # answered within the grace period
        await asyncio.to_thread(stopper.join, WAIT)
        with pytest.raises((ClientNotConnected, HardLightError)):
            await client.call("echo", 1, timeout=2)
        await client.disconnect()

    _run(go())


def test_certificate_mismatch_is_refused(
    probe_server: RunningServer, pair: tuple[str, str]
) -> None:
    other = ServerTLS.self_signed("localhost")
    client = _client(probe_server, pair[1], tls=ClientTLS.pinned(other.fingerprint))
    with pytest.raises(CertificateMismatch):
        _run(client.connect())


def test_default_client_refuses_a_self_signed_server(
    probe_server: RunningServer, pair: tuple[str, str]
) -> None:
    client = _client(probe_server, pair[1], tls=ClientTLS())
    with pytest.raises((ssl.SSLCertVerificationError, ssl.SSLError, OSError, HardLightError)):
        _run(client.connect())


def test_refused_handshake(pair: tuple[str, str]) -> None:
    def deny(info: Any) -> None:
        raise Refuse("no entry", 403)

    config = ServerConfig.self_signed("localhost:0", authenticate=deny)
    with running(pair[0], config, ProbeHandler) as server:
        client = _client(server, pair[1])
        with pytest.raises(ConnectionRefused) as info:
            _run(client.connect())
        assert info.value.status_code == 403


def test_ca_issued_certificate(pair: tuple[str, str]) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    tls = ServerTLS(b"".join(b.bytes() for b in leaf.cert_chain_pems), leaf.private_key_pem.bytes())
    config = ServerConfig(host="127.0.0.1", port=0, tls=tls)
    with running(pair[0], config, ProbeHandler) as server:
        client = _client(server, pair[1], tls=ClientTLS(ca_pem=ca.cert_pem.bytes()))
        assert server.config.fingerprint  # computed from the certificate

        async def go() -> int:
            await client.connect()
            try:
                value: int = await client.call("echo", 42)
                return value
            finally:
                await client.disconnect()

        assert _run(go()) == 42


@pytest.mark.parametrize("client_adapter", ADAPTERS)
def test_reconnect_with_backoff_after_the_server_comes_back(client_adapter: str) -> None:
    import socket

    from hardlight_core import ReconnectPolicy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tls = ServerTLS.self_signed("localhost", "127.0.0.1")
    config = ServerConfig(host="127.0.0.1", port=port, tls=tls)
    first = RunningServer("asyncio", config, ProbeHandler)
    client_config = ClientConfig(
        f"localhost:{port}",
        tls=ClientTLS.pinned(tls.fingerprint),
        call_timeout=2.0,
        reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2, max_attempts=100),
    )
    client = LiveClient(client_adapter, Probe, client_config)

    async def go() -> None:
        await client.connect()
        assert await client.call("echo", 1) == 1
        await asyncio.to_thread(first.stop, 0.5)
        second = await asyncio.to_thread(RunningServer, "asyncio", config, ProbeHandler)
        try:
            deadline = time.monotonic() + WAIT
            while True:
                try:
                    assert await client.call("echo", 2, timeout=1.0) == 2
                    break
                except (ClientNotConnected, HardLightError):
                    assert time.monotonic() < deadline, "the client never reconnected"
                    await asyncio.sleep(0.05)
            await client.disconnect()
        finally:
            await asyncio.to_thread(second.stop, 0.5)

    _run(go())


def test_no_thread_or_task_is_left_behind() -> None:
    before = {t.name for t in threading.enumerate()}
    for server_adapter in ADAPTERS:
        with running(server_adapter, ServerConfig.self_signed("localhost:0"), ProbeHandler) as s:
            for client_adapter in ADAPTERS:
                client = _client(s, client_adapter)

                async def go(c: LiveClient = client) -> None:
                    await c.connect()
                    assert await c.call("echo", 3) == 3
                    await c.disconnect()
                    await asyncio.sleep(0.05)
                    leftover = [
                        t for t in asyncio.all_tasks() if t is not asyncio.current_task()
                    ]
                    assert not [t for t in leftover if "hardlight" in repr(t.get_coro())]

                _run(go())
            _eventually(lambda s=s: s.connection_count == 0, "connections left")
            _eventually(lambda s=s: s.topics == 0, "subscriptions left")
    _eventually(
        lambda: not [
            t.name for t in threading.enumerate()
            if t.name.startswith("hardlight") and t.name not in before
        ],
        "hardlight threads left behind",
    )


def test_a_short_timeout_is_not_held_up_by_a_longer_one() -> None:
    with running("asyncio", ServerConfig.self_signed("localhost:0"), ProbeHandler) as server:

        async def go() -> None:
            client = _client(server, "asyncio")
            await client.connect()
            try:
                slow = asyncio.ensure_future(client.call("wait", 3000, timeout=5.0))
                await asyncio.sleep(0.05)
                started = time.monotonic()
                with pytest.raises(CallTimeout):
                    await client.call("wait", 3000, timeout=0.2)
                assert time.monotonic() - started < 1.5
                slow.cancel()
            finally:
                await client.disconnect()

        _run(go())
