"""The gossip node's rules (protocols/gossip/node.py) on hand-driven envs: Merkle-digest
reconciliation (one exchange makes two replicas equal; the bytes follow the difference,
not the state), flows, rumor forwarding from the next period, feedback, restarts and
malformed input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, ServiceOp
from consensuskit.core.messages import decode, encode
from consensuskit.protocols.gossip.messages import (
    DigestProbe,
    Entry,
    LeafDigest,
    Rumor,
    RumorFeedback,
    RumorRequest,
)
from consensuskit.protocols.gossip.node import ANTI_ENTROPY_TIMER, RUMOR_TIMER, GossipNode, validate_options
from consensuskit.protocols.gossip.peers import mesh
from tests.protocols.fake_env import FakeEnv, LockstepCluster


class Gossip(LockstepCluster):
    def build(self, node_id: str, env: FakeEnv) -> Any:
        return GossipNode(node_id, env, self.ids, dict(self.options))

    def exchange(self, initiator: str, peer: str) -> int:
        """One anti-entropy exchange started by ``initiator`` with ``peer``; the bytes sent."""
        self.envs[initiator].rng.choice = lambda seq: peer  # type: ignore[method-assign]
        self.fire(initiator, ANTI_ENTROPY_TIMER)
        sent = 0
        for _ in range(50):
            batch = [(src, dst, m) for src in self.ids for dst, m in self.envs[src].take()]
            if not batch:
                break
            for src, dst, msg in batch:
                sent += len(encode(msg))
                self.nodes[dst].on_message(src, decode(encode(msg)))
        return sent


def entry(key: str, counter: int, origin: str = "x") -> Entry:
    return Entry(key=key, counter=counter, origin=origin, value=f"{key}@{counter}{origin}")


def two(**options: Any) -> Gossip:
    return Gossip(["a", "b"], rumor=False, **options)


stamps = st.dictionaries(
    st.text(alphabet="abcdefghij", min_size=1, max_size=3),
    st.tuples(st.integers(1, 5), st.sampled_from(["x", "y"])),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(left=stamps, right=stamps)
def test_one_digest_exchange_makes_both_replicas_equal(left: dict, right: dict) -> None:
    cluster = two(exchange="digest", mode="push-pull")
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    a.replica.merge_all(entry(k, c, o) for k, (c, o) in left.items())
    b.replica.merge_all(entry(k, c, o) for k, (c, o) in right.items())
    union = {}
    for k, stamp in [*left.items(), *right.items()]:
        union[k] = max(union.get(k, stamp), stamp)
    cluster.exchange("a", "b")
    assert a.digest() == b.digest() == tuple((k, c, o) for k, (c, o) in sorted(union.items()))
    assert a.replica.root() == b.replica.root()


@settings(max_examples=40, deadline=None)
@given(left=stamps, right=stamps, flow=st.sampled_from(["push", "pull"]))
def test_one_way_flows_move_entries_one_way_only(left: dict, right: dict, flow: str) -> None:
    """push: the initiator's entries reach the peer and nothing comes back; pull: the
    reverse. The receiving side ends holding the newest of both for every key."""
    cluster = two(exchange="digest", mode=flow)
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    a.replica.merge_all(entry(k, c, o) for k, (c, o) in left.items())
    b.replica.merge_all(entry(k, c, o) for k, (c, o) in right.items())
    before_a, before_b = a.digest(), b.digest()
    cluster.exchange("a", "b")
    receiver, giver, giver_before = (b, a, before_a) if flow == "push" else (a, b, before_b)
    assert giver.digest() == giver_before
    held = {k: (c, o) for k, c, o in receiver.digest()}
    for k, c, o in giver_before:
        assert held[k] >= (c, o)


@pytest.mark.parametrize("exchange", ["digest", "full"])
def test_full_and_digest_exchanges_agree(exchange: str) -> None:
    cluster = two(exchange=exchange, mode="push-pull")
    cluster.nodes["a"].replica.merge_all(entry(f"k{i}", 1) for i in range(50))
    cluster.nodes["b"].replica.merge_all(entry(f"k{i}", 2, "y") for i in range(25, 80))
    cluster.exchange("a", "b")
    assert cluster.nodes["a"].digest() == cluster.nodes["b"].digest()
    assert len(cluster.nodes["a"].digest()) == 80


def _bytes_for(common: int, differ: int, exchange: str) -> int:
    cluster = two(exchange=exchange, mode="push-pull")
    shared = [entry(f"key-{i}", 1) for i in range(common)]
    cluster.nodes["a"].replica.merge_all(shared)
    cluster.nodes["b"].replica.merge_all(shared)
    cluster.nodes["a"].replica.merge_all(entry(f"only-a-{i}", 1) for i in range(differ))
    cluster.nodes["b"].replica.merge_all(entry(f"key-{i}", 2, "y") for i in range(differ))
    sent = cluster.exchange("a", "b")
    assert cluster.nodes["a"].digest() == cluster.nodes["b"].digest()
    return sent


def test_digest_bytes_follow_the_difference_not_the_state() -> None:
    """States of 5,000 and of 20,000 shared entries, 10 + 10 differences: the digest
    exchange costs about the same (measured: 8.4 kB and 10.5 kB); doubling the difference
    about doubles it. The full-state exchange grows with the state (ten times the state,
    ten times the bytes): at 10,000 entries it already costs over 40 times the digest
    exchange at 20,000."""
    small, large = _bytes_for(5_000, 10, "digest"), _bytes_for(20_000, 10, "digest")
    assert large < 1.4 * small, (small, large)
    assert _bytes_for(20_000, 20, "digest") > 1.6 * large
    full_small, full_large = _bytes_for(1_000, 10, "full"), _bytes_for(10_000, 10, "full")
    assert full_large > 8 * full_small
    assert large * 40 < full_large


def test_equal_replicas_exchange_one_root_hash() -> None:
    cluster = two(exchange="digest", mode="push-pull")
    for node in cluster.nodes.values():
        node.replica.merge_all(entry(f"k{i}", 1) for i in range(100))
    cluster.fire("a", ANTI_ENTROPY_TIMER)
    sent = cluster.envs["a"].take()
    assert len(sent) == 1 and isinstance(sent[0][1], DigestProbe)
    cluster.nodes["b"].on_message("a", sent[0][1])
    assert cluster.envs["b"].take() == []


def test_a_learned_rumor_is_forwarded_next_period_to_others_than_its_sender() -> None:
    """Seeds 000/003: nothing goes out when the rumor arrives; at the next rumor period it
    goes to ``fanout`` peers, never back to the one it came from."""
    cluster = Gossip(["a", "b", "c", "d"], fanout=2, anti_entropy_period=0)
    b = cluster.nodes["b"]
    b.on_message("a", Rumor(entries=(entry("k", 1, "a"),)))
    assert cluster.envs["b"].take() == []
    cluster.fire("b", RUMOR_TIMER)
    sent = cluster.envs["b"].take()
    assert sorted(dst for dst, _ in sent) == ["c", "d"]
    assert all(isinstance(m, Rumor) and m.entries[0].key == "k" for _, m in sent)


def test_feedback_counter_cools_a_rumor_after_k_known() -> None:
    cluster = Gossip(["a", "b", "c"], rumor_k=2, anti_entropy_period=0)
    a = cluster.nodes["a"]
    a.on_request(ClientRequest(client_id="c1", seq=1, op=ServiceOp(kind="put", key="k", value=1)))
    assert a.hot == {"k": 0}
    a.on_message("b", RumorFeedback(known=("k",)))
    assert a.hot == {"k": 1}
    a.on_message("c", RumorFeedback(known=("k",)))
    assert a.hot == {}
    cluster.fire("a", RUMOR_TIMER)
    assert [m for _, m in cluster.envs["a"].take() if isinstance(m, Rumor)] == []


def test_blind_counter_cools_after_k_rounds_whatever_the_answers() -> None:
    cluster = Gossip(["a", "b", "c"], rumor_k=2, rumor_feedback=False, anti_entropy_period=0)
    a = cluster.nodes["a"]
    a.on_request(ClientRequest(client_id="c1", seq=1, op=ServiceOp(kind="put", key="k", value=1)))
    a.on_message("b", RumorFeedback(known=("k",)))  # blind: answers change nothing
    assert a.hot == {"k": 0}
    cluster.fire("a", RUMOR_TIMER)
    assert a.hot == {"k": 1}
    cluster.fire("a", RUMOR_TIMER)
    assert a.hot == {}
    assert sum(isinstance(m, Rumor) for _, m in cluster.envs["a"].take()) == 2 * 2  # 2 rounds, fan-out 2


def test_feedback_coin_with_k1_cools_at_the_first_known() -> None:
    cluster = Gossip(["a", "b"], rumor_k=1, rumor_loss="coin", anti_entropy_period=0)
    a = cluster.nodes["a"]
    a.on_request(ClientRequest(client_id="c1", seq=1, op=ServiceOp(kind="put", key="k", value=1)))
    a.on_message("b", RumorFeedback(known=("other",)))
    assert a.hot == {"k": 0}
    a.on_message("b", RumorFeedback(known=("k",)))
    assert a.hot == {}


def test_pull_rumor_mongering_asks_and_is_answered_with_hot_rumors() -> None:
    """rumor_mode pull: every period a node asks one peer, hot rumors or not; a peer
    answers with its hot rumors (none: no answer), and the answer gets feedback."""
    cluster = Gossip(["a", "b"], rumor_mode="pull", anti_entropy_period=0)
    cluster.fire("b", RUMOR_TIMER)
    [(dst, request)] = cluster.envs["b"].take()
    assert dst == "a" and isinstance(request, RumorRequest)
    cluster.nodes["a"].on_message("b", request)
    assert cluster.envs["a"].take() == []  # nothing hot: no answer
    cluster.nodes["a"].on_request(
        ClientRequest(client_id="c1", seq=1, op=ServiceOp(kind="put", key="k", value=1))
    )
    cluster.fire("a", RUMOR_TIMER)
    assert [type(m) for _, m in cluster.envs["a"].take()] == [RumorRequest]  # pull never pushes
    cluster.nodes["a"].on_message("b", request)
    [(dst, answer)] = cluster.envs["a"].take()
    assert dst == "b" and isinstance(answer, Rumor) and answer.entries[0].key == "k"


def test_a_receiver_that_knew_says_so() -> None:
    cluster = Gossip(["a", "b"], anti_entropy_period=0)
    b = cluster.nodes["b"]
    b.replica.merge(entry("k", 3))
    b.on_message("a", Rumor(entries=(entry("k", 2), entry("new", 1))))
    [(dst, msg)] = cluster.envs["b"].take()
    assert dst == "a" and msg == RumorFeedback(known=("k",))
    assert b.replica.get("k").counter == 3 and "new" in b.hot


def test_writes_survive_a_restart_and_stamps_keep_rising() -> None:
    cluster = Gossip(["a", "b"], anti_entropy_period=0)
    a = cluster.nodes["a"]
    a.on_request(ClientRequest(client_id="c1", seq=1, op=ServiceOp(kind="put", key="k", value="v1")))
    a.on_message("b", Rumor(entries=(entry("j", 7, "b"),)))
    again = cluster.restart("a")
    assert again.replica.get("k").value == "v1" and again.replica.get("j").counter == 7
    again.on_request(ClientRequest(client_id="c1", seq=2, op=ServiceOp(kind="put", key="k", value="v2")))
    assert again.replica.get("k").counter == 8
    answer = cluster.envs["a"].delivered[-1]
    assert answer.ok and answer.result == {"counter": 8, "origin": "a"}


def test_malformed_messages_are_dropped_and_counted() -> None:
    cluster = two()
    a = cluster.nodes["a"]
    a.on_message("b", "garbage")
    a.on_message("b", DigestProbe(flow="sideways", initiator=True, nodes=(("", b"x"),)))
    a.on_message("b", DigestProbe(flow="push", initiator=True, nodes=((5, b"x"),)))  # type: ignore[arg-type]
    a.on_message("b", LeafDigest(flow="push", initiator=True, prefixes=("0000",), stamps=(("k",),)))  # type: ignore[arg-type]
    assert a.dropped == 4 and cluster.envs["a"].take() == []


def test_mesh_is_connected_symmetric_and_the_same_everywhere() -> None:
    members = [f"n{i}" for i in range(30)]
    graph = mesh(members, degree=4, graph_seed=3)
    assert graph == mesh(list(reversed(members)), degree=4, graph_seed=3)
    assert all(a in graph[b] for a in graph for b in graph[a])
    assert min(len(p) for p in graph.values()) >= 2 and max(len(p) for p in graph.values()) < 29
    seen, todo = {"n0"}, ["n0"]
    while todo:
        for peer in graph[todo.pop()]:
            if peer not in seen:
                seen.add(peer)
                todo.append(peer)
    assert seen == set(members)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "sideways"}, "mode must be one of"),
        ({"exchange": "xor"}, "exchange must be one of"),
        ({"fanout": 0}, "fanout must be an int >= 1"),
        ({"colour": 1}, "unknown gossip option"),
        ({"rumor_period": 0}, "rumor_period must be > 0"),
        ({"rumor_loss": "dice"}, "rumor_loss must be one of counter, coin"),
        ({"rumor_feedback": "yes"}, "rumor_feedback must be true or false"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_options(options)


def test_an_entry_with_a_counter_near_the_int64_limit_is_dropped() -> None:
    """Found by the peer-port fuzzing: a Rumor stamped 2^63-1, merged, made the node's
    next write 2^63, which no peer can decode; each dropped the connection carrying it,
    and the node was cut off for good (its log held it too)."""
    cluster = two()
    a = cluster.nodes["a"]
    a.on_message("b", decode(encode(Rumor(entries=(entry("k", 2**63 - 1, "b"), entry("j", -1, "b"))))))
    assert a.dropped == 2 and a.replica.get("k") is None and a.replica.get("j") is None
    a.on_request(ClientRequest(client_id="c1", seq=1, op=ServiceOp(kind="put", key="k", value="v")))
    assert decode(encode(a.replica.get("k"))).counter == 1


def test_an_entry_beyond_a_step_above_the_nodes_counters_is_dropped() -> None:
    """A counter at the ceiling itself (2^62) was merged, so the node's next write was
    stamped 2^62+1, which every peer dropped: its writes never spread again.  A counter
    more than a step above the node's greatest is dropped now; one within it is merged,
    and the next write is stamped above it."""
    from consensuskit.protocols.common.number_bounds import CEILING, STEP

    cluster = two()
    a = cluster.nodes["a"]
    own = a.replica.max_counter
    a.on_message(
        "b", decode(encode(Rumor(entries=(entry("k", CEILING, "b"), entry("j", own + STEP + 1, "b")))))
    )
    assert a.dropped == 2 and a.replica.get("k") is None and a.replica.get("j") is None
    a.on_message("b", decode(encode(Rumor(entries=(entry("j", own + STEP, "b"),)))))
    assert a.dropped == 2 and a.replica.get("j").counter == own + STEP
    a.on_request(ClientRequest(client_id="c1", seq=1, op=ServiceOp(kind="put", key="k", value="v")))
    assert decode(encode(a.replica.get("k"))).counter == own + STEP + 1
