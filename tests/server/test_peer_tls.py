"""Peer TLS that authenticates (peer_tls.py, handshake version 2, config ``[tls]``).

The relay tests are the attack issue 10 item 4 reproduced on main: a man in the middle
that terminates TLS on both legs, forwards the handshake and rewrites a RequestVote's
term 5 -> 999999.  The control case (the channel binding switched off, which is what main
did) shows the relay really does pass and rewrite when nothing binds the handshake to the
TLS connection, so the bound case failing is the binding's doing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest

from consensuskit.core.messages import decode, encode
from consensuskit.protocols.raft.messages import RequestVote
from consensuskit.server import handshake, peer_tls
from consensuskit.server.config import ConfigError, TLSConfig, load_config
from consensuskit.server.framing import FrameDecoder, frame
from tests.server.test_transport import LOOPS, Node, eventually, run, settle
from tests.server.test_transport_tls import make_certificate

pytestmark = pytest.mark.timeout(60)

cryptography = pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


class CA:
    """A throwaway certificate authority that signs node certificates for 127.0.0.1."""

    def __init__(self, directory: Path, name: str = "cluster-ca") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / f"{name}.pem"
        self.path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = self.directory / f"{name}-cert.pem", self.directory / f"{name}-key.pem"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path


def transport_tls(tls: TLSConfig) -> dict[str, Any]:
    """The transport arguments ``server/main.py`` builds from a ``[tls]`` section."""
    return {
        "ssl_server": tls.server_context(),
        "ssl_client": tls.client_context(),
        "tls_identity": tls.identity(),
    }


def vote(term: int) -> RequestVote:
    return RequestVote(term=term, candidate="a", last_log_index=0, last_log_term=0)


class Relay:
    """A man in the middle: TLS towards the dialer with ``server_ctx``, TLS towards the
    real acceptor with ``client_ctx``; forwards the handshake both ways, then decodes the
    dialer's frames and rewrites every RequestVote term 5 to 999999."""

    def __init__(
        self, target: tuple[str, int], server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
    ) -> None:
        self.target = target
        self.server_ctx = server_ctx
        self.client_ctx = client_ctx
        self.connections = 0
        self.rewritten = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.server_ctx)
        return ("127.0.0.1", self.server.sockets[0].getsockname()[1])

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._relay(reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _relay(self, from_dialer: asyncio.StreamReader, to_dialer: asyncio.StreamWriter) -> None:
        self.writers.append(to_dialer)
        try:
            from_acceptor, to_acceptor = await asyncio.open_connection(*self.target, ssl=self.client_ctx)
        except (OSError, ssl.SSLError):
            to_dialer.close()
            return
        self.writers.append(to_acceptor)
        self.connections += 1
        back = asyncio.get_running_loop().create_task(self._copy(from_acceptor, to_dialer))
        self.tasks.add(back)
        try:
            head = await from_dialer.readexactly(2)  # version, id length
            proof = head + await from_dialer.readexactly(head[1] + 2 * 32)
            to_acceptor.write(proof)
            decoder = FrameDecoder(1 << 20)
            while data := await from_dialer.read(65536):
                decoder.feed(data)
                while (payload := decoder.next_payload()) is not None:
                    msg = decode(payload)
                    if isinstance(msg, RequestVote) and msg.term == 5:
                        msg = dataclasses.replace(msg, term=999999)
                        self.rewritten += 1
                    to_acceptor.write(frame(encode(msg)))
                await to_acceptor.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            to_acceptor.close()
            to_dialer.close()

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture()
def ca(tmp_path: Path) -> CA:
    return CA(tmp_path)


def _relay_contexts(cert: Path, key: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.load_cert_chain(cert, key)
    return server, client


async def _through_relay(
    a_tls: TLSConfig, b_tls: TLSConfig, relay_ctx: tuple[ssl.SSLContext, ssl.SSLContext]
) -> tuple[Node, Node, Relay]:
    """Node a dials b through the relay (b dials a directly); a sends RequestVote term 5."""
    a = Node("a", handshake_timeout=2.0, **transport_tls(a_tls))
    b = Node("b", handshake_timeout=2.0, **transport_tls(b_tls))
    for node in (a, b):
        await node.transport.start()
    relay = Relay(b.address, *relay_ctx)
    relay_address = await relay.start()
    a.transport.update_peers({"b": relay_address})
    b.transport.update_peers({"a": a.address})
    return a, b, relay


@pytest.mark.parametrize("loop", LOOPS)
def test_a_relay_with_a_cluster_signed_certificate_cannot_pass_the_handshake(ca, loop, caplog):
    """The relay's certificate is signed by the cluster CA, so TLS alone lets it in on both
    legs; the channel binding (different tls-unique and certificates on each leg) is what
    makes the forwarded proofs fail."""
    caplog.set_level(logging.WARNING)
    a_tls = TLSConfig(cert=(c := ca.issue("n-a"))[0], key=c[1], ca=ca.path)
    b_tls = TLSConfig(cert=(c := ca.issue("n-b"))[0], key=c[1], ca=ca.path)
    mallory = ca.issue("mallory")

    async def main() -> None:
        a, b, relay = await _through_relay(a_tls, b_tls, _relay_contexts(*mallory))
        for _ in range(20):
            a.transport.send("b", vote(5))
            await asyncio.sleep(0.02)
        await eventually(lambda: a.stats("b").auth_failures >= 2, "a's handshakes through the relay fail")
        assert relay.connections >= 1  # TLS passed on both legs: the relay really sat in the middle
        await settle(0.2)
        assert b.received_from("a") == []
        assert relay.rewritten == 0
        assert a.stats("b").connects == 0 and b.stats("a").accepts == 0
        assert b.transport.stats.auth_failures >= 1
        await relay.stop()
        for node in (a, b):
            await node.transport.stop()

    run(main(), loop)
    assert "failed the secret check" in caplog.text


def test_control_without_the_binding_the_relay_passes_and_rewrites_the_term(ca, monkeypatch):
    """What main did (no binding): the same relay passes and b accepts term 999999 as from
    a.  This is the check that the test above would have caught the attack."""
    monkeypatch.setattr(peer_tls, "channel_binding", lambda *args, **kwargs: None)
    a_tls = TLSConfig(cert=(c := ca.issue("n-a"))[0], key=c[1], ca=ca.path)
    b_tls = TLSConfig(cert=(c := ca.issue("n-b"))[0], key=c[1], ca=ca.path)
    mallory = ca.issue("mallory")

    async def main() -> None:
        a, b, relay = await _through_relay(a_tls, b_tls, _relay_contexts(*mallory))
        a.transport.send("b", vote(5))
        await eventually(lambda: b.received_from("a") != [], "the relayed vote arrives")
        assert b.received_from("a")[0].term == 999999
        await relay.stop()
        for node in (a, b):
            await node.transport.stop()

    run(main())


def test_a_relay_with_a_self_signed_certificate_fails_tls_on_both_sides(ca, tmp_path):
    """Issue 10 item 4 as found: cert and key, but a relay with its own self-signed
    certificate.  Now the dialer verifies the acceptor: the relay never gets a handshake."""
    a_tls = TLSConfig(cert=(c := ca.issue("n-a"))[0], key=c[1], ca=ca.path)
    b_tls = TLSConfig(cert=(c := ca.issue("n-b"))[0], key=c[1], ca=ca.path)
    relay_cert = make_certificate(tmp_path, "relay")

    async def main() -> None:
        a, b, relay = await _through_relay(a_tls, b_tls, _relay_contexts(*relay_cert))
        a.transport.send("b", vote(5))
        await eventually(lambda: a.stats("b").connect_failures >= 2, "a refuses the relay's certificate")
        await settle(0.2)
        assert b.received_from("a") == [] and relay.rewritten == 0
        assert relay.connections == 0  # b refused the relay's client certificate too
        await relay.stop()
        for node in (a, b):
            await node.transport.stop()

    run(main())


def test_pinned_certificates_authenticate_without_a_ca(tmp_path):
    """Self-signed node certificates, each node pinning the others' (and its own) files."""
    a_cert, a_key = make_certificate(tmp_path, "pa")
    b_cert, b_key = make_certificate(tmp_path, "pb")
    pins = (a_cert, b_cert)
    a_tls = TLSConfig(cert=a_cert, key=a_key, pinned=pins)
    b_tls = TLSConfig(cert=b_cert, key=b_key, pinned=pins)

    async def main() -> None:
        a = Node("a", **transport_tls(a_tls))
        b = Node("b", **transport_tls(b_tls))
        for node in (a, b):
            await node.transport.start()
        a.transport.update_peers({"b": b.address})
        b.transport.update_peers({"a": a.address})
        a.transport.send("b", vote(5))
        b.transport.send("a", vote(6))
        await eventually(lambda: b.received_from("a") and a.received_from("b"), "votes both ways")
        assert b.received_from("a")[0].term == 5
        for node in (a, b):
            await node.transport.stop()

    run(main())


def test_a_certificate_signed_by_a_pinned_one_is_not_itself_pinned(tmp_path):
    """Pinning means exactly those certificates: one issued by a pinned certificate (the
    test certificates carry the CA flag) passes OpenSSL's chain check but not the pin."""
    issuer = CA(tmp_path, "pinned-issuer")
    issuer_key = tmp_path / "pinned-issuer-key.pem"
    issuer_key.write_bytes(
        issuer.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    child_cert, child_key = issuer.issue("child")
    pins = (issuer.path,)
    a_tls = TLSConfig(cert=issuer.path, key=issuer_key, pinned=pins)
    b_tls = TLSConfig(cert=child_cert, key=child_key, pinned=pins)

    async def main() -> None:
        a = Node("a", handshake_timeout=1.0, **transport_tls(a_tls))
        b = Node("b", handshake_timeout=1.0, **transport_tls(b_tls))
        for node in (a, b):
            await node.transport.start()
        a.transport.update_peers({"b": b.address})
        b.transport.update_peers({"a": a.address})
        a.transport.send("b", vote(5))
        b.transport.send("a", vote(5))
        await eventually(
            lambda: a.stats("b").auth_failures >= 1 and b.transport.stats.auth_failures >= 1,
            "a refuses b's unpinned certificate, both ways",
        )
        await settle(0.2)
        assert a.inbox == [] and b.inbox == []
        for node in (a, b):
            await node.transport.stop()

    run(main())


def test_a_tls_dialer_refuses_an_acceptor_that_offers_only_the_unbound_version():
    """No downgrade: an acceptor (or a relay) offering only version 1 is refused."""

    async def main() -> Any:
        reader = asyncio.StreamReader()
        reader.feed_data(handshake.MAGIC + bytes([1, 1]) + b"A" * 32)
        reader.feed_eof()

        class Sink:
            def write(self, data: bytes) -> None:
                raise AssertionError("the dialer must not send a proof")

            async def drain(self) -> None:
                return None

        with pytest.raises(handshake.HandshakeError, match="no common handshake version"):
            await handshake.dial(
                reader,
                Sink(),
                node_id="a",
                secret=b"s",
                expected_peer="b",
                binding=b"x",  # type: ignore[arg-type]
            )

    asyncio.run(main())


def test_the_bound_mac_covers_the_binding_and_differs_from_version_1():
    args = (b"secret", b"A" * 32, b"D" * 32, b"a")
    unbound = handshake.dialer_mac(*args)
    assert handshake.dialer_mac(*args, b"binding-1") != unbound
    assert handshake.dialer_mac(*args, b"binding-1") != handshake.dialer_mac(*args, b"binding-2")
    bound = handshake.acceptor_mac(*args, b"b", b"binding-1")
    assert bound != handshake.acceptor_mac(*args, b"b", b"binding-2")
    # Version 1 is unchanged: the first release's construction, byte for byte.
    import hashlib
    import hmac

    old = hmac.new(b"secret", b"consensuskit-v1dialer" + b"A" * 32 + b"D" * 32 + b"\x01a", hashlib.sha256)
    assert unbound == old.digest()


def test_the_binding_is_the_same_on_both_ends_and_names_both_certificates(ca):
    """tls-unique under TLS 1.3 with this OpenSSL: equal on both ends of one connection."""
    a_tls = TLSConfig(cert=(c := ca.issue("n-a"))[0], key=c[1], ca=ca.path)
    b_tls = TLSConfig(cert=(c := ca.issue("n-b"))[0], key=c[1], ca=ca.path)

    async def main() -> tuple[bytes, bytes, str]:
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            obj = writer.get_extra_info("ssl_object")
            got.set_result(peer_tls.channel_binding(obj, b_tls.identity(), dialer=False))
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=b_tls.server_context())
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=a_tls.client_context())
        obj = writer.get_extra_info("ssl_object")
        mine = peer_tls.channel_binding(obj, a_tls.identity(), dialer=True)
        theirs = await got
        writer.close()
        server.close()
        return mine, theirs, obj.version()

    mine, theirs, version = asyncio.run(main())
    assert version == "TLSv1.3"
    assert mine == theirs
    a_fp, b_fp = a_tls.identity().fingerprint, b_tls.identity().fingerprint
    assert mine.endswith(a_fp + b_fp)  # dialer's certificate, then the acceptor's


# ------------------------------------------------------------------ configuration
def _config_text(tmp_path: Path, tls: str) -> Path:
    (tmp_path / "secret").write_text("s3cret")
    path = tmp_path / "node.toml"
    path.write_text(
        'id = "n1"\npeer_address = "127.0.0.1:0"\nclient_address = "127.0.0.1:0"\n'
        f'data_dir = "data"\nsecret_file = "secret"\n[tls]\n{tls}'
    )
    return path


def test_peer_tls_without_a_ca_or_pins_is_a_config_error(tmp_path):
    cert, key = make_certificate(tmp_path, "n1")
    path = _config_text(tmp_path, f'cert = "{cert.name}"\nkey = "{key.name}"\n')
    with pytest.raises(ConfigError, match=r"tls: peer TLS needs ca .* or pinned"):
        load_config(path)


def test_pinned_paths_are_relative_to_the_file_and_must_exist(tmp_path):
    cert, key = make_certificate(tmp_path, "n1")
    path = _config_text(tmp_path, f'cert = "{cert.name}"\nkey = "{key.name}"\npinned = ["{cert.name}"]\n')
    config = load_config(path)
    assert config.tls is not None and config.tls.pinned == (cert,)
    assert config.tls.identity().pins == frozenset({peer_tls.certificate_fingerprint(cert)})
    missing = _config_text(tmp_path, f'cert = "{cert.name}"\nkey = "{key.name}"\npinned = ["nope.pem"]\n')
    with pytest.raises(ConfigError, match=r"tls\.pinned: .*nope\.pem not found"):
        load_config(missing)


def test_the_server_command_exits_2_on_tls_without_a_ca(tmp_path, capsys):
    from consensuskit.server.main import EXIT_CONFIG, serve_command

    cert, key = make_certificate(tmp_path, "n1")
    path = _config_text(tmp_path, f'cert = "{cert.name}"\nkey = "{key.name}"\n')
    assert serve_command(path) == EXIT_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: tls: peer TLS needs ca")


def test_the_listener_requires_a_client_certificate(ca):
    """Both directions verify: a dialer that trusts the CA but shows no certificate never
    sees the handshake hello."""
    b_tls = TLSConfig(cert=(c := ca.issue("n-b"))[0], key=c[1], ca=ca.path)

    async def main() -> bytes:
        b = Node("b", handshake_timeout=1.0, **transport_tls(b_tls))
        await b.transport.start()
        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.check_hostname = False
        anonymous.load_verify_locations(ca.path)
        try:
            reader, writer = await asyncio.open_connection(*b.address, ssl=anonymous)
            try:
                answer = await asyncio.wait_for(reader.read(), 5)
            except (ssl.SSLError, ConnectionError):
                answer = b""
            writer.close()
        except (ssl.SSLError, ConnectionError):
            answer = b""
        await b.transport.stop()
        return answer

    assert not run(main()).startswith(handshake.MAGIC)
