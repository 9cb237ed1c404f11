"""A node's peers know which data directory it runs on: one that comes back on a new
directory other than by --rejoin (a wrong --bootstrap after a disk loss, a second
process with a copied config) is refused by every peer that knew it
(server/incarnations.py, transport.py)."""

from __future__ import annotations

import json
import logging

import pytest

from consensuskit.catalog import default_registry
from consensuskit.core.messages import decode, encode
from consensuskit.server.incarnations import INCARNATIONS_NAME, IncarnationBook, read_incarnations
from consensuskit.server.peer_hello import PeerHello, PeerIncarnation
from tests.server.test_transport import Node, eventually, hb, run, settle

pytestmark = pytest.mark.timeout(60)

HELLO = PeerHello("raft", "kv", "c-1", "0.1.0")


def book(tmp_path, node_id="n1", incarnation="i-n1", origin="bootstrap", sub=None):
    directory = tmp_path / (sub or node_id)
    directory.mkdir(exist_ok=True)
    return IncarnationBook(node_id, incarnation, origin, directory, fsync=False)


def test_the_message_round_trips():
    said = PeerIncarnation("ab12", "rejoin", "")
    assert decode(encode(said)) == said


def test_a_peer_is_known_by_the_first_directory_it_runs_on(tmp_path):
    n1 = book(tmp_path)
    assert n1.introduce("n3") == PeerIncarnation("i-n1", "bootstrap", "")
    assert n1.judge("n3", PeerIncarnation("old", "bootstrap", "")) is None  # first seen: recorded
    assert n1.known("n3") == "old"
    assert n1.introduce("n3") == PeerIncarnation("i-n1", "bootstrap", "old")
    assert n1.judge("n3", PeerIncarnation("old", "earlier", "i-n1")) is None  # the same one again
    # Kept on disk: a restarted n1 still knows it.
    assert read_incarnations(tmp_path / "n1") == {"n3": "old"}
    assert book(tmp_path).known("n3") == "old"


@pytest.mark.parametrize("origin", ["bootstrap", "join", "earlier"])
def test_a_new_directory_not_made_by_rejoin_is_refused_and_nothing_recorded(tmp_path, origin):
    n1 = book(tmp_path)
    n1.judge("n3", PeerIncarnation("old", "bootstrap", ""))
    refusal = n1.judge("n3", PeerIncarnation("new", origin, ""))
    assert refusal is not None and "\n" not in refusal
    assert "but this node knew n3 on old:" in refusal
    assert "start n3 again on an empty directory with --rejoin" in refusal
    made = {
        "bootstrap": "by --bootstrap",
        "join": "empty for a node outside the initial members",
        "earlier": "by an earlier release",
    }
    assert refusal.startswith(f"it runs on data directory new, made {made[origin]}, but this node knew n3 on")
    assert n1.known("n3") == "old" and read_incarnations(tmp_path / "n1") == {"n3": "old"}
    assert n1.judge("n3", PeerIncarnation("new", origin, "")) == refusal  # every time


@pytest.mark.parametrize("replaceable", [True, False])
def test_a_protocol_without_rejoin_names_the_ways_it_has(tmp_path, replaceable):
    options = {"fsync": False, "protocol": "2pc", "rejoins": False, "replaceable": replaceable}
    n1 = IncarnationBook("n1", "i-n1", "bootstrap", tmp_path, **options)
    n1.judge("n3", PeerIncarnation("old", "bootstrap", ""))
    refusal = n1.judge("n3", PeerIncarnation("new", "bootstrap", ""))
    assert refusal is not None and "--rejoin" not in refusal.replace("(no --rejoin)", "")
    assert "2pc cannot take a node back after a disk loss (no --rejoin)" in refusal
    assert ("add a node under another id and remove n3" in refusal) == replaceable
    assert ("nor replace it (no membership change)" in refusal) == (not replaceable)
    assert "restore a backup into a new cluster" in refusal
    fresh = IncarnationBook("n3", "new", "bootstrap", tmp_path / "n3", **options)
    why = fresh.refused_here("n1", PeerIncarnation("i-n1", "bootstrap", "old"))
    assert why is not None and "2pc cannot take a node back" in why


def test_every_protocol_keeps_a_book_but_those_whose_peers_give_a_wiped_node_its_state_back():
    registry = default_registry()
    exempt = {name for name in registry.names() if registry.get(name).amnesia_safe}
    assert exempt == {"gossip", "gossip-kv", "swim"}
    # --rejoin is a way back only where the catalog says so.
    rejoins = {n for n in registry.names() if registry.get(n).survives_disk_loss}
    assert rejoins == {"raft", "multipaxos", "zab", "sharded-raft"}


def test_a_node_back_by_rejoin_is_taken_and_its_directory_recorded(tmp_path, caplog):
    n1 = book(tmp_path)
    n1.judge("n3", PeerIncarnation("old", "bootstrap", ""))
    with caplog.at_level(logging.WARNING):
        assert n1.judge("n3", PeerIncarnation("new", "rejoin", "")) is None
    assert n1.known("n3") == "new" and read_incarnations(tmp_path / "n1") == {"n3": "new"}
    assert "peer n3 came back on a new data directory (new, was old) by --rejoin" in caplog.text
    # Readmitted and restarted it stays "rejoin"; the old directory is now the stranger.
    assert n1.judge("n3", PeerIncarnation("new", "rejoin", "")) is None
    assert n1.judge("n3", PeerIncarnation("old", "bootstrap", "")) is not None


def test_a_node_told_it_is_known_by_another_directory_hears_why(tmp_path):
    fresh = book(tmp_path, "n3", "new", "bootstrap")
    said = PeerIncarnation("i-n1", "earlier", "old")
    why = fresh.refused_here("n1", said)
    assert why is not None and "\n" not in why
    assert why.startswith("peer n1 knew this node on data directory old, not this one (new, made by")
    assert "stop it and start n3 again on an empty directory with --rejoin" in why
    assert fresh.refused_here("n1", PeerIncarnation("i-n1", "earlier", "")) is None  # knows none
    assert fresh.refused_here("n1", PeerIncarnation("i-n1", "earlier", "new")) is None  # knows this one
    # A node back by --rejoin is taken by the peer once it introduces itself: no alarm.
    rejoined = book(tmp_path, "n3", "new", "rejoin", sub="n3r")
    assert rejoined.refused_here("n1", said) is None


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"format": 2, "peers": {}}),
        json.dumps({"format": 1, "peers": {"n3": 7}}),
        json.dumps({"format": 1, "peers": {"n3": ""}}),
        json.dumps([1]),
    ],
)
def test_a_malformed_file_is_ignored_with_a_warning(tmp_path, caplog, content):
    (tmp_path / INCARNATIONS_NAME).write_text(content)
    with caplog.at_level(logging.WARNING):
        assert read_incarnations(tmp_path) == {}
    assert f"ignoring {tmp_path / INCARNATIONS_NAME}" in caplog.text


def founding(tmp_path, node_id, founders, sub=None):
    directory = tmp_path / (sub or node_id)
    directory.mkdir(exist_ok=True)
    return IncarnationBook(node_id, f"i-{node_id}", "bootstrap", directory, fsync=False, founders=founders)


def test_a_peer_founded_with_other_members_is_refused_and_not_recorded(tmp_path):
    n1 = founding(tmp_path, "n1", ("n3", "n2", "n1"))
    assert n1.introduce("n3").founders == ("n1", "n2", "n3")
    refusal = n1.judge("n3", PeerIncarnation("i-n3", "bootstrap", "", ("n3",)))
    assert refusal is not None and "\n" not in refusal
    assert refusal.startswith(
        "it was bootstrapped as a member of a cluster of n3, this node of n1, n2, n3: nodes started "
        "with --bootstrap from configs whose members differ form different clusters"
    )
    assert n1.known("n3") is None and read_incarnations(tmp_path / "n1") == {}
    # Corrected and bootstrapped again on an empty directory: taken, as a first start.
    assert n1.judge("n3", PeerIncarnation("i-n3-new", "bootstrap", "", ("n1", "n2", "n3"))) is None
    assert n1.known("n3") == "i-n3-new"


def test_founders_are_compared_only_where_both_sides_know_theirs(tmp_path):
    n1 = founding(tmp_path, "n1", ("n1", "n2", "n3"))
    assert n1.judge("n2", PeerIncarnation("i-n2", "bootstrap", "", ("n3", "n2", "n1"))) is None  # same set
    assert n1.judge("n4", PeerIncarnation("i-n4", "join", "")) is None  # a node added later knows none
    unknowing = book(tmp_path, "n5")  # a directory of an earlier release, or made by --rejoin
    assert unknowing.judge("n3", PeerIncarnation("i-n3", "bootstrap", "", ("n3",))) is None


@pytest.mark.parametrize("founders", [("",), ("x" * 65,), tuple(f"n{i}" for i in range(257)), ("n1", 7)])
def test_a_malformed_founders_list_is_refused(tmp_path, founders):
    n1 = founding(tmp_path, "n1", ("n1", "n2", "n3"))
    refusal = n1.judge("n3", PeerIncarnation("i-n3", "bootstrap", "", founders))
    assert refusal is not None and refusal.startswith("its list of founding members is malformed")
    assert n1.known("n3") is None


def test_peers_founded_apart_refuse_each_other_over_the_transport(tmp_path, caplog):
    async def main() -> None:
        a_book = founding(tmp_path, "a", ("a", "b"))
        b_book = founding(tmp_path, "b", ("b",))  # its config named only itself
        a, b = await _pair(a_book, b_book)
        await eventually(lambda: a.stats("b").refused and b.stats("a").refused, "both refusals")
        for _ in range(3):
            b.transport.send("a", hb(2))
            a.transport.send("b", hb(1))
        await eventually(
            lambda: a.stats("b").dropped_foreign == 3 and b.stats("a").dropped_foreign == 3, "drops"
        )
        assert a.inbox == [] and b.inbox == []
        assert a_book.known("b") is None and b_book.known("a") is None
        for node in (a, b):
            await node.transport.stop()

    with caplog.at_level(logging.ERROR):
        run(main())
    lines = [r.getMessage() for r in caplog.records]
    said = "it was bootstrapped as a member of a cluster of"
    assert sum(f"{said} b, this node of a, b" in line for line in lines) == 1
    assert sum(f"{said} a, b, this node of b" in line for line in lines) == 1


def test_no_file_is_nothing_known(tmp_path):
    assert read_incarnations(tmp_path) == {}


# -- over the transport --------------------------------------------------------------------
async def _pair(a_book: IncarnationBook | None, b_book: IncarnationBook | None) -> tuple[Node, Node]:
    a = Node("a", hello=HELLO, **({"incarnations": a_book} if a_book else {}))
    b = Node("b", hello=HELLO, **({"incarnations": b_book} if b_book else {}))
    await a.transport.start()
    await b.transport.start()
    for node in (a, b):
        node.transport.update_peers({"a": a.address, "b": b.address})
    return a, b


def test_peers_that_know_each_other_deliver_and_learn_each_other(tmp_path):
    async def main() -> None:
        a_book, b_book = book(tmp_path, "a", "i-a"), book(tmp_path, "b", "i-b")
        a, b = await _pair(a_book, b_book)
        a.transport.send("b", hb(1))
        b.transport.send("a", hb(2))
        await eventually(lambda: a.inbox and b.inbox, "one message each way")
        assert b.commits_from("a") == [1] and a.commits_from("b") == [2]  # greetings not delivered
        assert a_book.known("b") == "i-b" and b_book.known("a") == "i-a"
        assert a.stats("b").bytes_sent == b.stats("a").bytes_received  # the greeting counted both sides
        for node in (a, b):
            await node.transport.stop()

    run(main())


def test_a_peer_on_a_directory_made_by_bootstrap_is_refused_and_both_logs_say_why(tmp_path, caplog):
    async def main() -> None:
        a_book = book(tmp_path, "a", "i-a")
        a_book.judge("b", PeerIncarnation("b-before", "bootstrap", ""))  # a knew b's lost directory
        b_book = book(tmp_path, "b", "b-now", "bootstrap")
        a, b = await _pair(a_book, b_book)
        await eventually(lambda: a.stats("b").refused is not None, "a's refusal")
        for _ in range(5):
            b.transport.send("a", hb(2))
            a.transport.send("b", hb(1))
        await eventually(lambda: a.stats("b").dropped_foreign == 5, "the drops")
        await eventually(lambda: len(b.inbox) == 5, "a's messages reach b")  # b refuses nobody
        await settle()
        assert a.inbox == [] and a.transport.connected_from() == set()
        assert a.stats("b").refused == a_book.judge("b", PeerIncarnation("b-now", "bootstrap", ""))
        assert a_book.known("b") == "b-before"
        for node in (a, b):
            await node.transport.stop()

    with caplog.at_level(logging.ERROR):
        run(main())
    lines = [r.getMessage() for r in caplog.records]
    assert sum("dropping its messages: it runs on data directory b-now" in line for line in lines) == 1
    assert sum(line.startswith("peer a knew this node on data directory b-before") for line in lines) == 1


def test_a_peer_without_a_book_an_earlier_release_is_judged_by_its_hello_alone(tmp_path):
    async def main() -> None:
        a_book = book(tmp_path, "a", "i-a")
        a, b = await _pair(a_book, None)
        b.transport.send("a", hb(7))
        a.transport.send("b", hb(8))
        await eventually(lambda: a.inbox and b.inbox, "one message each way")
        assert a.stats("b").refused is None and a_book.known("b") is None
        for node in (a, b):
            await node.transport.stop()

    run(main())


@pytest.mark.parametrize("incarnation", ["", "x" * 65, "ab\ncd", "é1"])
def test_a_malformed_incarnation_is_refused_and_not_recorded(tmp_path, incarnation):
    n1 = book(tmp_path)
    refusal = n1.judge("n3", PeerIncarnation(incarnation, "bootstrap", ""))
    assert refusal is not None and refusal.startswith("its data directory's incarnation is malformed")
    assert "\n" not in refusal and n1.known("n3") is None
    assert n1.judge("n3", PeerIncarnation("x" * 64, "bootstrap", "")) is None  # the longest allowed


def test_only_the_first_incarnation_on_a_connection_is_judged(tmp_path):
    async def main() -> None:
        a_book, b_book = book(tmp_path, "a", "i-a"), book(tmp_path, "b", "i-b")
        a, b = await _pair(a_book, b_book)
        a.transport.send("b", hb(1))
        await eventually(lambda: b.inbox, "a's first message")
        for n in range(3):  # as if a claimed to have rejoined, over and over
            a.transport.send("b", PeerIncarnation(f"again-{n}", "rejoin", "i-b"))
        a.transport.send("b", hb(2))
        await eventually(lambda: len(b.inbox) == 2, "a's second message")
        assert b.commits_from("a") == [1, 2] and b.stats("a").refused is None
        assert b_book.known("a") == "i-a" and read_incarnations(tmp_path / "b") == {"a": "i-a"}
        for node in (a, b):
            await node.transport.stop()

    run(main())


def test_a_hello_after_a_refused_incarnation_does_not_lift_the_refusal(tmp_path):
    async def main() -> None:
        a_book = book(tmp_path, "a", "i-a")
        a_book.judge("b", PeerIncarnation("b-before", "bootstrap", ""))
        a, b = await _pair(a_book, book(tmp_path, "b", "b-now", "bootstrap"))
        await eventually(lambda: a.stats("b").refused is not None, "a's refusal")
        b.transport.send("a", HELLO)  # the same setup again, as if that settled it
        b.transport.send("a", hb(3))
        await eventually(lambda: a.stats("b").dropped_foreign == 1, "the drop")
        assert a.inbox == [] and "b-now" in a.stats("b").refused
        for node in (a, b):
            await node.transport.stop()

    run(main())


def test_a_bootstrapped_node_tells_its_peers_the_members_it_founded(tmp_path):
    # The wiring: open_storage records the configured members, the book sends them.
    from consensuskit.server.main import incarnation_book, open_storage
    from tests.server.runtime_harness import node_config

    config = node_config(tmp_path, "n2", ["n1", "n2", "n3"])
    storage = open_storage(config)
    try:
        made = incarnation_book(config, rejoins=True, replaceable=True)
        assert made is not None and made.introduce("n1").founders == ("n1", "n2", "n3")
    finally:
        storage.close()
