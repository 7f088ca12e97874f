"""The adapters' HTTP client over TLS: a throwaway CA and server certificates made here, an
ssl-wrapped asyncio server on loopback, and the client verifying it as in production (the
real providers are https only, so this is the path every real text takes). Run on asyncio's
loop and on uvloop (the workers' loop); synchronous tests, each with its own loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from koinonia.sms.http import HttpClient, HttpError

LOOPS = ["asyncio", "uvloop"]
ANSWER = b'HTTP/1.1 201 Created\r\nContent-Length: 14\r\n\r\n{"sid": "SM1"}'


class Authority:
    """A throwaway certificate authority, and server certificates it signs."""

    def __init__(self, directory: Path, name: str = "Koinonia test CA") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            self._builder(self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def _builder(self, subject: x509.Name, public_key: Any) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
        )

    def client_context(self) -> ssl.SSLContext:
        """What the client does by default (verification on, hostname checked), trusting
        this authority instead of the system's."""
        pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()
        return ssl.create_default_context(cadata=pem)

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A server presenting a certificate for `names` (IP addresses or DNS names)."""
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        cert = (
            self._builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]), key.public_key()
            )
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        stem = self.directory / f"server-{cert.serial_number}"
        cert_file, key_file = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        return context


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


def run_on(loop: str, coro: Coroutine[Any, Any, Any]) -> Any:
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def exchange(loop: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext | None) -> Any:
    """Two POSTs to an HTTPS server on loopback: the connections it accepted, the requests it
    read, and each answer (or the exception the post raised)."""

    async def go() -> tuple[int, list[bytes], list[Any]]:
        connections = 0
        requests: list[bytes] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    requests.append(head + await reader.readexactly(length))
                    writer.write(ANSWER)
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                pass  # the client hung up, or refused our certificate
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        client = HttpClient(ssl_context=client_tls)
        request = client.prepare(f"https://127.0.0.1:{port}/send", {"Authorization": "Basic a"})
        outcomes: list[Any] = []
        try:
            for body in (b"To=%2B1", b"To=%2B2"):
                try:
                    outcomes.append(await client.post(request, body, within_s=5))
                except (HttpError, OSError) as exc:
                    outcomes.append(exc)
        finally:
            await client.close()
            server.close()
        return connections, requests, outcomes

    return run_on(loop, go())


@pytest.mark.parametrize("loop", LOOPS)
def test_a_certificate_from_a_trusted_authority_is_accepted_and_kept_alive(
    ca: Authority, loop: str
) -> None:
    connections, requests, outcomes = exchange(
        loop, ca.server_context("127.0.0.1", "localhost"), ca.client_context()
    )
    assert [(r.status, r.body) for r in outcomes] == [(201, b'{"sid": "SM1"}')] * 2
    assert [r.partition(b"\r\n\r\n")[2] for r in requests] == [b"To=%2B1", b"To=%2B2"]
    assert connections == 1  # one handshake, then keep-alive


@pytest.mark.parametrize("loop", LOOPS)
def test_a_certificate_from_an_unknown_authority_is_refused(
    ca: Authority, tmp_path: Path, loop: str
) -> None:
    stranger = Authority(tmp_path, "Someone else's CA")  # the right name, an untrusted signer
    _, requests, outcomes = exchange(
        loop, stranger.server_context("127.0.0.1"), ca.client_context()
    )
    assert requests == []  # nothing was sent to it
    for outcome in outcomes:
        assert isinstance(outcome, ssl.SSLCertVerificationError)
        assert "unable to get local issuer certificate" in str(outcome)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_trusted_certificate_for_another_host_is_refused(ca: Authority, loop: str) -> None:
    _, requests, outcomes = exchange(
        loop, ca.server_context("api.twilio.example", "10.0.0.1"), ca.client_context()
    )
    assert requests == []
    for outcome in outcomes:
        assert isinstance(outcome, ssl.SSLCertVerificationError)
        assert "IP address mismatch" in str(outcome)


def test_without_a_context_only_the_systems_authorities_are_trusted(ca: Authority) -> None:
    _, requests, outcomes = exchange("asyncio", ca.server_context("127.0.0.1"), None)
    assert requests == []
    assert all(isinstance(o, ssl.SSLCertVerificationError) for o in outcomes)
