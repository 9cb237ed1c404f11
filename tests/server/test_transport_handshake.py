"""The peer handshake: exact wire bytes, mutual proof, and every way to be refused."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import pytest

from consensuskit.server import handshake
from consensuskit.server.handshake import HandshakeError, Verdict

SECRET = b"cluster-secret"
ACCEPTOR_NONCE = b"A" * 32
DIALER_NONCE = b"D" * 32

pytestmark = pytest.mark.timeout(30)


def naive_mac(secret: bytes, *parts: bytes) -> bytes:
    """An independent twin of the MAC construction described in handshake.py's docstring."""
    return hmac.new(secret, b"".join(parts), hashlib.sha256).digest()


class RecordingWriter:
    """Stands in for a StreamWriter: keeps what was written."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


def reader_with(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def proof_from(dialer_id: bytes, secret: bytes = SECRET, version: int = 1) -> bytes:
    mac = naive_mac(
        secret,
        b"consensuskit-v1",
        b"dialer",
        ACCEPTOR_NONCE,
        DIALER_NONCE,
        bytes([len(dialer_id)]),
        dialer_id,
    )
    return bytes([version, len(dialer_id)]) + dialer_id + DIALER_NONCE + mac


def accept(data: bytes, known: set[str], secret: bytes = SECRET) -> tuple[Any, bytes]:
    """Run the acceptor over canned dialer bytes; returns (result or exception, bytes written)."""

    async def go() -> tuple[Any, bytes]:
        writer = RecordingWriter()
        try:
            result: Any = await handshake.accept(
                reader_with(data),
                writer,  # type: ignore[arg-type]
                node_id="a",
                secret=secret,
                is_known_peer=known.__contains__,
                random_bytes=lambda n: ACCEPTOR_NONCE[:n],
            )
        except HandshakeError as exc:
            result = exc
        return result, bytes(writer.data)

    return asyncio.run(go())


HELLO = b"CKIT\x01\x01" + ACCEPTOR_NONCE


def test_acceptor_transcript_accepted():
    result, written = accept(proof_from(b"b"), known={"b"})
    assert result == "b"
    acceptor_mac = naive_mac(
        SECRET, b"consensuskit-v1", b"acceptor", ACCEPTOR_NONCE, DIALER_NONCE, b"\x01b", b"\x01a"
    )
    assert written == HELLO + b"\x00" + b"\x01a" + acceptor_mac


def test_acceptor_refuses_a_wrong_secret_and_names_the_claimed_id():
    result, written = accept(proof_from(b"b", secret=b"other"), known={"b"})
    assert isinstance(result, HandshakeError)
    assert result.claimed_id == "b"
    assert "failed the secret check" in result.reason
    assert written == HELLO + bytes([Verdict.BAD_PROOF])


def test_acceptor_refuses_an_unknown_node_even_with_the_right_secret():
    result, written = accept(proof_from(b"zed"), known={"b"})
    assert isinstance(result, HandshakeError)
    assert result.claimed_id is None  # a claim about a non-peer is attributed to nobody
    assert "'zed', which is not a peer (with a valid proof)" in result.reason
    assert written == HELLO + bytes([Verdict.UNKNOWN_PEER])


def test_acceptor_refuses_other_versions_empty_and_non_utf8_ids():
    result, written = accept(proof_from(b"b", version=2), known={"b"})
    assert isinstance(result, HandshakeError) and written.endswith(bytes([Verdict.BAD_VERSION]))
    result, written = accept(b"\x01\x00" + b"x" * 64, known={"b"})
    assert isinstance(result, HandshakeError) and written.endswith(bytes([Verdict.MALFORMED]))
    result, written = accept(proof_from(b"\xff"), known={"b"})
    assert isinstance(result, HandshakeError) and written.endswith(bytes([Verdict.MALFORMED]))


def test_acceptor_reports_a_connection_closed_mid_proof():
    result, written = accept(proof_from(b"b")[:20], known={"b"})
    assert isinstance(result, HandshakeError)
    assert "closed during the handshake" in result.reason
    assert written == HELLO


def test_garbage_instead_of_a_proof_is_refused():
    result, _ = accept(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00" * 100, known={"b"})
    assert isinstance(result, HandshakeError)


def dial(acceptor_bytes: bytes, expected_peer: str = "a", secret: bytes = SECRET) -> tuple[Any, bytes]:
    async def go() -> tuple[Any, bytes]:
        writer = RecordingWriter()
        try:
            result: Any = await handshake.dial(
                reader_with(acceptor_bytes),
                writer,  # type: ignore[arg-type]
                node_id="b",
                secret=secret,
                expected_peer=expected_peer,
                random_bytes=lambda n: DIALER_NONCE[:n],
            )
        except HandshakeError as exc:
            result = exc
        return result, bytes(writer.data)

    return asyncio.run(go())


def acceptor_answer(acceptor_id: bytes = b"a", secret: bytes = SECRET) -> bytes:
    mac = naive_mac(
        secret, b"consensuskit-v1", b"acceptor", ACCEPTOR_NONCE, DIALER_NONCE, b"\x01b", b"\x01", acceptor_id
    )
    return b"\x00" + bytes([len(acceptor_id)]) + acceptor_id + mac


def test_dialer_transcript_accepted():
    result, written = dial(HELLO + acceptor_answer())
    assert result is None
    assert written == proof_from(b"b")


def test_dialer_refuses_an_acceptor_that_does_not_know_the_secret():
    """Mutual authentication: an impostor that says "accepted" is still caught."""
    result, _ = dial(HELLO + acceptor_answer(secret=b"impostor"))
    assert isinstance(result, HandshakeError)
    assert result.claimed_id == "a"
    assert "acceptor failed the secret check" in result.reason


def test_dialer_refuses_to_talk_to_a_different_node_than_it_dialed():
    result, _ = dial(HELLO + acceptor_answer(acceptor_id=b"c"))
    assert isinstance(result, HandshakeError)
    assert "reached node 'c' instead of 'a'" in result.reason


def test_dialer_reports_the_acceptors_refusal():
    result, _ = dial(HELLO + bytes([Verdict.BAD_PROOF]))
    assert isinstance(result, HandshakeError)
    assert result.reason == "refused by the acceptor: bad proof"


def test_dialer_refuses_a_non_consensuskit_listener_and_version_mismatch():
    result, written = dial(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 20)
    assert isinstance(result, HandshakeError) and "bad magic" in result.reason
    assert written == b""  # it said nothing about itself
    result, _ = dial(b"CKIT\x02\x03" + ACCEPTOR_NONCE)
    assert isinstance(result, HandshakeError) and "no common handshake version" in result.reason


def test_dialer_proof_cannot_be_reflected_as_an_acceptor_proof():
    """The role label makes the two MACs differ even over identical nonces and ids."""
    args = (SECRET, ACCEPTOR_NONCE, DIALER_NONCE, b"b")
    assert handshake.dialer_mac(*args) != handshake.acceptor_mac(*args, b"b")


def test_ids_are_length_prefixed_so_boundaries_cannot_shift():
    assert handshake.acceptor_mac(
        SECRET, ACCEPTOR_NONCE, DIALER_NONCE, b"ab", b"c"
    ) != handshake.acceptor_mac(SECRET, ACCEPTOR_NONCE, DIALER_NONCE, b"a", b"bc")


def test_node_ids_must_fit_one_length_byte():
    assert handshake.node_id_bytes("n1") == b"n1"
    for bad in ("", "x" * 256):
        with pytest.raises(ValueError):
            handshake.node_id_bytes(bad)


async def handshake_over_tcp(
    acceptor_secret: bytes, dialer_secret: bytes, known: set[str]
) -> tuple[Any, Any]:
    results: dict[str, Any] = {}
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            results["acceptor"] = await handshake.accept(
                reader, writer, node_id="a", secret=acceptor_secret, is_known_peer=known.__contains__
            )
        except HandshakeError as exc:
            results["acceptor"] = exc
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await handshake.dial(reader, writer, node_id="b", secret=dialer_secret, expected_peer="a")
        results["dialer"] = None
    except HandshakeError as exc:
        results["dialer"] = exc
    writer.close()
    await done.wait()
    server.close()
    await server.wait_closed()
    return results["acceptor"], results["dialer"]


def test_over_tcp_both_sides_agree():
    acceptor, dialer = asyncio.run(handshake_over_tcp(SECRET, SECRET, {"b"}))
    assert acceptor == "b"
    assert dialer is None


def test_over_tcp_a_wrong_secret_fails_on_both_sides():
    acceptor, dialer = asyncio.run(handshake_over_tcp(SECRET, b"wrong", {"b"}))
    assert isinstance(acceptor, HandshakeError) and acceptor.claimed_id == "b"
    assert isinstance(dialer, HandshakeError) and "refused by the acceptor: bad proof" in dialer.reason
