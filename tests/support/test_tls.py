"""TLS policy: self-signed certificates, CA trust, pinning, and insecure only on request."""

from __future__ import annotations

import logging
import socket
import ssl
import threading

import pytest

from hardlight_support import (
    CertificateMismatch,
    ClientConfig,
    ClientTLS,
    ServerConfig,
    ServerTLS,
    fingerprint_sha256,
)


def _serve_once(context: ssl.SSLContext) -> tuple[int, threading.Thread]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)
    port = listener.getsockname()[1]

    def run() -> None:
        try:
            raw, _ = listener.accept()
            raw.settimeout(5)
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass
        finally:
            listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread


def _handshake(policy: ClientTLS, port: int) -> bytes:
    context = policy.ssl_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(
        raw, server_hostname="localhost"
    ) as tls:
        policy.check_peer(tls.getpeercert(binary_form=True))
        return tls.recv(2)


@pytest.fixture(scope="module")
def server_tls() -> ServerTLS:
    return ServerTLS.self_signed("localhost", "127.0.0.1")


def test_self_signed_fingerprint_matches_the_certificate(server_tls: ServerTLS) -> None:
    der = ssl.PEM_cert_to_DER_cert(server_tls.cert_pem.decode())
    assert server_tls.fingerprint == fingerprint_sha256(der)
    assert len(server_tls.fingerprint) == 64


def test_default_client_refuses_a_self_signed_server(server_tls: ServerTLS) -> None:
    port, thread = _serve_once(server_tls.ssl_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ClientTLS(), port)
    thread.join(5)


def test_ca_trust_accepts(server_tls: ServerTLS) -> None:
    port, thread = _serve_once(server_tls.ssl_context())
    assert _handshake(ClientTLS(ca_pem=server_tls.cert_pem), port) == b"ok"
    thread.join(5)


def test_pin_accepts_the_right_certificate(server_tls: ServerTLS) -> None:
    port, thread = _serve_once(server_tls.ssl_context())
    assert _handshake(ClientTLS.pinned(server_tls.fingerprint.upper()), port) == b"ok"
    thread.join(5)


def test_pin_refuses_another_certificate(server_tls: ServerTLS) -> None:
    other = ServerTLS.self_signed("localhost")
    port, thread = _serve_once(other.ssl_context())
    with pytest.raises(CertificateMismatch):
        _handshake(ClientTLS.pinned(server_tls.fingerprint), port)
    thread.join(5)


def test_insecure_is_explicit_and_logged(
    server_tls: ServerTLS, caplog: pytest.LogCaptureFixture
) -> None:
    port, thread = _serve_once(server_tls.ssl_context())
    with caplog.at_level(logging.WARNING, logger="hardlight"):
        assert _handshake(ClientTLS(insecure=True), port) == b"ok"
    assert "verification is OFF" in caplog.text
    thread.join(5)


def test_bad_pin_is_refused_at_configuration() -> None:
    with pytest.raises(ValueError):
        ClientTLS.pinned("abc")


def test_server_config_needs_tls_or_explicit_plaintext() -> None:
    with pytest.raises(ValueError, match="plaintext"):
        ServerConfig()
    assert ServerConfig.plain("127.0.0.1:9000").port == 9000
    config = ServerConfig.self_signed("localhost:8080")
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.fingerprint == config.tls.fingerprint if config.tls else False


def test_client_config_addresses() -> None:
    assert ClientConfig("wss://example.org:9443/").host_port == ("example.org", 9443)
    with pytest.raises(ValueError, match="needs a port"):  # never a silent 443
        ClientConfig("example.org")
    with pytest.raises(ValueError):
        ClientConfig(compression_level=10)
