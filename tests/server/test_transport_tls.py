"""PeerTransport over TLS, with self-signed certificates made for the test run (by the
``cryptography`` package when installed, else the ``openssl`` command; skipped without
either).  The HMAC handshake still runs inside TLS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from consensuskit.server import handshake, peer_tls
from tests.server.test_transport import LOOPS, Node, eventually, hb, run, settle

pytestmark = pytest.mark.timeout(60)


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate valid for 127.0.0.1: (cert.pem, key.pem)."""
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return cert, key
    private_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private_key, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


def contexts(cert: Path, key: Path, trusted: Path) -> dict[str, Any]:
    """Mutual TLS: each side shows ``cert`` and accepts only certificates signed by ``trusted``."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(trusted))
    server.load_cert_chain(cert, key)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(trusted))
    client.load_cert_chain(cert, key)
    identity = peer_tls.PeerIdentity(fingerprint=peer_tls.certificate_fingerprint(cert))
    return {"ssl_server": server, "ssl_client": client, "tls_identity": identity}


@pytest.fixture(scope="module")
def cluster_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"), "cluster")


@pytest.mark.parametrize("loop", LOOPS)
def test_nodes_exchange_messages_over_mutual_tls(loop, cluster_cert):
    cert, key = cluster_cert

    async def main() -> None:
        a = Node("a", **contexts(cert, key, cert))
        b = Node("b", **contexts(cert, key, cert))
        for node in (a, b):
            await node.transport.start()
        a.transport.update_peers({"b": b.address})
        b.transport.update_peers({"a": a.address})
        for i in range(100):
            a.transport.send("b", hb(i))
            b.transport.send("a", hb(i, leader="b"))
        await eventually(lambda: len(a.inbox) == 100 and len(b.inbox) == 100, "messages both ways")
        assert b.commits_from("a") == list(range(100))
        assert a.commits_from("b") == list(range(100))
        await a.transport.stop()
        await b.transport.stop()
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run(main(), loop)


def test_the_listener_speaks_only_tls(cluster_cert):
    """A plaintext client never even sees the handshake hello."""
    cert, key = cluster_cert

    async def main() -> bytes:
        a = Node("a", handshake_timeout=0.5, **contexts(cert, key, cert))
        await a.transport.start()
        reader, writer = await asyncio.open_connection(*a.address)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await a.transport.stop()
        return answer

    assert not run(main()).startswith(handshake.MAGIC)


def test_a_plaintext_node_cannot_talk_to_a_tls_node(cluster_cert):
    cert, key = cluster_cert

    async def main() -> None:
        a = Node("a", handshake_timeout=0.5, **contexts(cert, key, cert))
        b = Node("b", handshake_timeout=0.5)
        for node in (a, b):
            await node.transport.start()
        a.transport.update_peers({"b": b.address})
        b.transport.update_peers({"a": a.address})
        a.transport.send("b", hb(1))
        b.transport.send("a", hb(1, leader="b"))
        await eventually(
            lambda: a.stats("b").connect_failures >= 1 and b.stats("a").connect_failures >= 1,
            "both dials fail",
        )
        await settle(0.1)
        assert a.inbox == [] and b.inbox == []
        await a.transport.stop()
        await b.transport.stop()

    run(main())


def test_a_certificate_from_outside_the_cluster_is_refused(cluster_cert, tmp_path, caplog):
    cert, key = cluster_cert
    stranger_cert, stranger_key = make_certificate(tmp_path, "stranger")
    caplog.set_level(logging.WARNING)

    async def main() -> None:
        a = Node("a", handshake_timeout=1.0, **contexts(cert, key, cert))
        # The stranger has the shared secret but a certificate the cluster does not trust.
        b = Node("b", handshake_timeout=1.0, **contexts(stranger_cert, stranger_key, cert))
        for node in (a, b):
            await node.transport.start()
        a.transport.update_peers({"b": b.address})
        b.transport.update_peers({"a": a.address})
        a.transport.send("b", hb(1))
        b.transport.send("a", hb(1, leader="b"))
        await eventually(lambda: a.stats("b").connect_failures >= 1, "a refuses b's certificate")
        await settle(0.2)
        assert a.inbox == [] and b.inbox == []
        assert a.stats("b").connects == 0 and b.stats("a").connects == 0
        await a.transport.stop()
        await b.transport.stop()

    run(main())
    assert "certificate verify failed" in caplog.text
