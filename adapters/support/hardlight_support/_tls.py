"""TLS material and policy shared by every adapter: secure by default.

Servers need a certificate: load one, or let :meth:`ServerTLS.self_signed` make
one (with the ``cryptography`` package) and publish its SHA-256 fingerprint.
Clients verify the server: against the system trust store, a CA, or a pinned
certificate fingerprint; only an explicit ``insecure=True`` skips checking, and
that is logged as a warning. (The reference's self-signed client accepts any
certificate; this port does not.)

Building :class:`ssl.SSLContext` objects happens here, once, at configuration
time; this is the only place the core touches files (OpenSSL loads a private
key only from a path).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass, field

from hardlight_core import HardLightError

__all__ = ["CertificateMismatch", "ClientTLS", "ServerTLS", "fingerprint_sha256"]

log = logging.getLogger("hardlight")


class CertificateMismatch(HardLightError):
    """The server's certificate does not match the pinned fingerprint."""


def fingerprint_sha256(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, as lower-case hex without colons."""
    return hashlib.sha256(der).hexdigest()


def _normalise_fingerprint(fingerprint: str) -> str:
    cleaned = fingerprint.replace(":", "").replace(" ", "").lower()
    if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise ValueError(f"not a SHA-256 fingerprint (64 hex digits): {fingerprint!r}")
    return cleaned


@dataclass(frozen=True)
class ServerTLS:
    """A server's certificate chain and key, in PEM."""

    cert_pem: bytes
    key_pem: bytes
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", _pem_fingerprint(self.cert_pem))

    @classmethod
    def from_files(cls, cert_file: str, key_file: str) -> ServerTLS:
        """Load a PEM certificate chain and its private key."""
        with open(cert_file, "rb") as f:
            cert_pem = f.read()
        with open(key_file, "rb") as f:
            key_pem = f.read()
        return cls(cert_pem, key_pem, _pem_fingerprint(cert_pem))

    @classmethod
    def self_signed(cls, *hostnames: str, days: int = 30) -> ServerTLS:
        """A fresh key and self-signed certificate for ``hostnames`` (names or IPs).

        Clients trust it by pinning :attr:`fingerprint` (or the certificate itself).
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        names = [h.rsplit(":", 1)[0] if h.count(":") == 1 else h for h in hostnames]
        names = names or ["localhost"]
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        alt_names: list[x509.GeneralName] = []
        for name in names:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt_names.append(x509.DNSName(name))
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        return cls(cert_pem, key_pem, fingerprint_sha256(der))

    def ssl_context(self) -> ssl.SSLContext:
        """A server context (TLS 1.2+) serving this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # OpenSSL reads keys only from files: write both to a private temp dir, load, delete.
        with tempfile.TemporaryDirectory(prefix="hardlight-") as tmp:
            cert_path = os.path.join(tmp, "cert.pem")
            key_path = os.path.join(tmp, "key.pem")
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self.key_pem)
            with open(cert_path, "wb") as f:
                f.write(self.cert_pem)
            context.load_cert_chain(cert_path, key_path)
        return context


def _pem_fingerprint(cert_pem: bytes) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))
    return fingerprint_sha256(der)


@dataclass(frozen=True)
class ClientTLS:
    """How a client checks the server's certificate.

    - default: the system trust store, with host name checking;
    - ``ca_file`` / ``ca_pem``: trust that CA (or that self-signed certificate) instead;
    - ``pin_sha256``: accept exactly the certificate with that SHA-256 fingerprint
      (checked after the handshake by :meth:`check_peer`, before any byte is sent);
    - ``insecure=True``: accept anything (logged as a warning). Never the default.
    """

    ca_file: str | None = None
    ca_pem: bytes | None = None
    pin_sha256: str | None = None
    insecure: bool = False
    server_hostname: str | None = None
    _pin: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.pin_sha256 is not None:
            object.__setattr__(self, "_pin", _normalise_fingerprint(self.pin_sha256))

    @classmethod
    def pinned(cls, fingerprint: str) -> ClientTLS:
        """Trust only the certificate with this SHA-256 fingerprint."""
        return cls(pin_sha256=fingerprint)

    def ssl_context(self) -> ssl.SSLContext:
        """The client context implementing this policy."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.insecure or self._pin is not None:
            # a pin replaces chain and name checks: check_peer compares the exact certificate
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            if self.insecure and self._pin is None:
                log.warning(
                    "TLS certificate verification is OFF (insecure=True): "
                    "anyone on the path can read and change this connection"
                )
            return context
        if self.ca_file is not None or self.ca_pem is not None:
            context.load_verify_locations(
                cafile=self.ca_file,
                cadata=self.ca_pem.decode("ascii") if self.ca_pem is not None else None,
            )
        else:
            context.load_default_certs()
        return context

    def check_peer(self, der: bytes | None) -> None:
        """After the TLS handshake: enforce the pin, if any (raises CertificateMismatch)."""
        if self._pin is None:
            return
        if der is None:
            raise CertificateMismatch("the server sent no certificate")
        seen = fingerprint_sha256(der)
        if not hmac.compare_digest(seen, self._pin):
            raise CertificateMismatch(
                f"server certificate fingerprint {seen} does not match the pinned {self._pin}"
            )
