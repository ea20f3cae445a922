"""``python -m hardlight serve module:Handler``: run as a user would, called with our client,
stopped by SIGTERM; and its errors for what cannot be served."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hl_ops import SERVICE_MODULE, Process, Slow

import hardlight_threads
from hardlight.__main__ import main
from hardlight_support import ClientConfig, ClientTLS, ServerTLS

GRACE = 3.0
BOUND = 6.0


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "slowsvc.py").write_text(SERVICE_MODULE)
    return tmp_path


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for proc in started:
        proc.kill()


def _serve(workdir: Path, processes: list[Process], *args: str) -> Process:
    proc = Process(["-m", "hardlight", "serve", "slowsvc:SlowHandler", *args], workdir)
    processes.append(proc)
    return proc


def _listening(proc: Process) -> int:
    line = proc.expect("listening on ")
    host, _, port = line.removeprefix("listening on ").rpartition(":")
    assert host == "127.0.0.1"
    return int(port)


def _connect(address: str, tls: ClientTLS) -> hardlight_threads.Client:
    config = ClientConfig(address=address, tls=tls, call_timeout=20.0, connect_timeout=10.0)
    client = hardlight_threads.Client(Slow, config)
    client.connect()
    return client


def _sigterm_during_a_call(proc: Process, client: hardlight_threads.Client) -> None:
    """A one-second call, SIGTERM while it runs: answered, then exit 0, 'stopped'."""
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(v=client.call("slow", 1000)))
    thread.start()
    proc.expect("call started")
    signalled = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    thread.join(GRACE + BOUND)
    assert result.get("v") == 1000
    assert proc.wait(GRACE + BOUND) == 0, proc.stderr()
    assert time.monotonic() - signalled < GRACE + BOUND
    assert "stopped" in proc.rest()


@pytest.mark.parametrize("adapter", ["asyncio", "anyio", "trio", "threads"])
def test_serve_self_signed_writes_the_certificate_logs_and_stops_on_sigterm(
    workdir: Path, processes: list[Process], adapter: str
) -> None:
    cert = workdir / "served-cert.pem"
    proc = _serve(
        workdir,
        processes,
        "--self-signed",
        "--port=0",
        f"--write-cert={cert}",
        f"--adapter={adapter}",
        f"--grace={GRACE}",
        "--level=DEBUG",
    )
    port = _listening(proc)
    fingerprint = proc.expect("fingerprint ").split()[1]
    assert ServerTLS(cert.read_bytes(), b"").fingerprint == fingerprint
    # a client that trusts the written certificate (chain and host name checked)
    client = _connect(f"localhost:{port}", ClientTLS(ca_file=str(cert)))
    try:
        assert client.call("echo", 41) == 41
        _sigterm_during_a_call(proc, client)
    finally:
        client.disconnect()
    log = proc.stderr()
    # the same operational log on every adapter, decided in the core
    assert "INFO hardlight: hardlight server (Slow) listening on 127.0.0.1:" in log
    assert "DEBUG hardlight: connection from ('127.0.0.1', " in log
    assert "accepted (path /, compression level" in log
    assert "echo from ('127.0.0.1', " in log and ": ok in " in log
    assert "slow from ('127.0.0.1', " in log
    assert "stopping on SIGTERM: 1 connections, 1 calls running, grace 3s" in log
    assert "closed: 1001 server shutting down" in log
    assert "INFO hardlight: hardlight server (Slow) stopped" in log


def test_serve_with_cert_and_key_files(workdir: Path, processes: list[Process]) -> None:
    tls = ServerTLS.self_signed("localhost", "127.0.0.1")
    (workdir / "c.pem").write_bytes(tls.cert_pem)
    (workdir / "k.pem").write_bytes(tls.key_pem)
    proc = _serve(workdir, processes, "--cert=c.pem", "--key=k.pem", "--port=0", "--grace=3")
    port = _listening(proc)
    assert proc.expect("fingerprint ").split()[1] == tls.fingerprint
    client = _connect(f"127.0.0.1:{port}", ClientTLS.pinned(tls.fingerprint))
    try:
        assert client.call("echo", 5) == 5
        _sigterm_during_a_call(proc, client)
    finally:
        client.disconnect()
    assert "DEBUG" not in proc.stderr()  # INFO by default


# -- errors, in process --------------------------------------------------------------------


@pytest.fixture
def here(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return workdir


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("slowsvc.SlowHandler", "expected package.module:Handler, got 'slowsvc.SlowHandler'"),
        ("nosuchmodule_xyz:Handler", "no module named 'nosuchmodule_xyz'"),
        ("slowsvc:Missing", "module 'slowsvc' has no attribute 'Missing'"),
        ("slowsvc:NotAHandler", "slowsvc:NotAHandler is not a Handler subclass (it is int)"),
        ("slowsvc:Slow", "it is a Service: serve its handler"),
    ],
)
def test_a_bad_target_is_a_clear_error(
    here: Path, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    assert main(["serve", target, "--self-signed", "--port=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hardlight serve: ")
    assert message in err


def test_a_module_whose_own_import_fails_says_so(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "brokensvc.py").write_text("import not_installed_dep_xyz\n")
    assert main(["serve", "brokensvc:H", "--self-signed"]) == 2
    assert "importing 'brokensvc' failed: No module named 'not_installed_dep_xyz'" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cert=nope.pem", "--key=nope.key"], "--cert nope.pem: no such file"),
        (["--cert=c.pem"], "--cert needs --key"),
        (["--cert=c.pem", "--key=nokey.pem"], "--key nokey.pem: no such file"),
        (["--plaintext", "--write-cert=x.pem"], "--write-cert needs TLS"),
        (["--cert=c.pem", "--key=other.pem"], "cannot use --cert c.pem --key other.pem"),
    ],
)
def test_certificate_arguments_are_checked(
    here: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (here / "c.pem").write_bytes(ServerTLS.self_signed("localhost").cert_pem)
    (here / "other.pem").write_bytes(ServerTLS.self_signed("localhost").key_pem)
    assert main(["serve", "slowsvc:SlowHandler", *args]) == 2
    assert message in capsys.readouterr().err


def test_tls_is_required_unless_plaintext_is_asked_for(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "slowsvc:SlowHandler"])
    assert exit_.value.code == 2
    assert "one of the arguments --cert --self-signed --plaintext is required" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("adapter", ["asyncio", "anyio", "trio", "threads"])
def test_a_port_in_use_is_a_clear_error(
    here: Path, capsys: pytest.CaptureFixture[str], adapter: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["serve", "slowsvc:SlowHandler", "--self-signed", f"--port={port}"]
        assert main([*args, f"--adapter={adapter}"]) == 1
    out = capsys.readouterr()
    assert f"hardlight serve: cannot listen on 127.0.0.1:{port}: the address is already in use" in (
        out.err
    )
    assert "listening on" not in out.out


def test_schema_still_works(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "slowsvc:Slow"]) == 0
    assert '"slow"' in capsys.readouterr().out


AUTH_MODULE = """
from hardlight import Refuse


def check_token(info):
    if info.header("authorization") != "Bearer s3cret":
        raise Refuse("a valid token, please", 401)
    return "alice"
"""


def test_serve_with_an_authenticate_hook(workdir: Path, processes: list[Process]) -> None:
    from hardlight_core import ConnectionRefused

    (workdir / "gate.py").write_text(AUTH_MODULE)
    proc = _serve(
        workdir, processes, "--self-signed", "--port=0", "--authenticate=gate:check_token"
    )
    port = _listening(proc)
    fingerprint = proc.expect("fingerprint ").split()[1]
    tls = ClientTLS.pinned(fingerprint)
    with pytest.raises(ConnectionRefused) as refused:
        _connect(f"127.0.0.1:{port}", tls)
    assert (refused.value.status_code, refused.value.reason) == (401, "a valid token, please")
    config = ClientConfig(
        address=f"127.0.0.1:{port}",
        tls=tls,
        headers={"Authorization": "Bearer s3cret"},
        call_timeout=20.0,
        connect_timeout=10.0,
    )
    with hardlight_threads.Client(Slow, config) as client:
        assert client.call("echo", 9) == 9


def test_a_bad_authenticate_hook_is_a_clear_error(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "gate.py").write_text("NOT_CALLABLE = 3\n")
    args = ["serve", "slowsvc:SlowHandler", "--self-signed", "--port=0"]
    assert main([*args, "--authenticate=gate:NOT_CALLABLE"]) == 2
    assert "gate:NOT_CALLABLE is not callable (it is int)" in capsys.readouterr().err
    assert main([*args, "--authenticate=gate:missing"]) == 2
    assert "module 'gate' has no attribute 'missing'" in capsys.readouterr().err
