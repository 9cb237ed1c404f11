"""PeerTransport encodes a broadcast once: the same message to several peers in a row."""

from __future__ import annotations

from consensuskit.core.messages import decode
from consensuskit.protocols.raft.messages import COMMAND, AppendEntries, Heartbeat, LogEntry
from consensuskit.server import transport as transport_module
from consensuskit.server.framing import HEADER
from consensuskit.server.transport import PeerTransport, _same_message

ENTRIES = (LogEntry(term=2, index=5, kind=COMMAND, data=None), LogEntry(term=2, index=6, kind=COMMAND))


def append(commit: int = 4, entries: tuple[LogEntry, ...] = ENTRIES, term: int = 2) -> AppendEntries:
    return AppendEntries(
        term=term, leader="a", prev_log_index=4, prev_log_term=2, entries=entries, leader_commit=commit
    )


def test_same_message_is_strict():
    assert _same_message(append(), append())
    assert not _same_message(append(), append(commit=5))
    assert not _same_message(append(), append(entries=ENTRIES[:1]))
    # Equal but distinct entries are not trusted to encode alike (cheap identity check only).
    copies = tuple(LogEntry(term=e.term, index=e.index, kind=e.kind, data=e.data) for e in ENTRIES)
    assert not _same_message(append(), append(entries=copies))
    # 1 == True, but they encode differently.
    assert not _same_message(append(term=1), append(term=True))  # type: ignore[arg-type]
    assert not _same_message(Heartbeat(term=2, leader="a", commit=4, context=1), append())


def test_a_broadcast_is_encoded_once_and_every_peer_gets_the_same_bytes(monkeypatch):
    calls = []
    real_encode = transport_module.encode

    def counting_encode(msg):
        calls.append(type(msg).__name__)
        return real_encode(msg)

    monkeypatch.setattr(transport_module, "encode", counting_encode)
    t = PeerTransport(
        "a", ("127.0.0.1", 0), {"b": ("127.0.0.1", 1), "c": ("127.0.0.1", 2)}, b"secret", lambda *_: None
    )
    t.send("b", append())
    t.send("c", append())  # equal, built separately (as Raft builds one per follower)
    t.send("b", append(commit=5))
    assert calls == ["AppendEntries", "AppendEntries"]
    queues = {peer: list(link.queue) for peer, link in t._links.items()}
    assert queues["b"][0] == queues["c"][0]
    assert decode(queues["b"][1][HEADER.size :]) == append(commit=5)
    assert decode(queues["c"][0][HEADER.size :]) == append()
