"""Throw-away TLS material for tests, made in-process: a CA, a server certificate (SAN
127.0.0.1 unless told otherwise) and a client certificate, as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agents.protocol.transport import TLSConfig


@dataclass(frozen=True)
class Material:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    def client(self) -> TLSConfig:
        return TLSConfig(self.ca, self.client_cert, self.client_key)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> str:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    usage: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_material(directory: Path, sans: list[x509.GeneralName] | None = None) -> Material:
    """A CA, a server certificate for 127.0.0.1 (or ``sans``) and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("test CA", ca_key, None, ca=True)
    issuer = (ca_cert.subject, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        "broker",
        server_key,
        issuer,
        sans=sans or [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue("node", client_key, issuer, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem) + ca_cert.public_bytes(pem))
    (directory / "client.pem").write_bytes(client.public_bytes(pem))
    return Material(
        ca=str(directory / "ca.pem"),
        server_cert=str(directory / "server.pem"),
        server_key=_write_key(directory / "server.key", server_key),
        client_cert=str(directory / "client.pem"),
        client_key=_write_key(directory / "client.key", client_key),
    )
