"""The gossip kv's rules (protocols/gossip/kv_node.py) on hand-driven envs: the merge is
commutative, associative and idempotent (hypothesis); writes are HLC-stamped above what
the node saw, acknowledged only once durable; tombstones and their collection; local
reads; what it refuses; restart from storage; the bug knobs' effects."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.messages import decode, encode
from consensuskit.protocols.gossip.hlc import pack, unpack
from consensuskit.protocols.gossip.kv_node import CAS_REFUSED, READ_REFUSED, GossipKVNode, validate_options
from consensuskit.protocols.gossip.messages import KVEntry, Rumor
from consensuskit.protocols.gossip.node import ANTI_ENTROPY_TIMER
from consensuskit.protocols.gossip.replica import Replica
from consensuskit.sim.storage import SimStorage
from tests.protocols.fake_env import FakeEnv, LockstepCluster


class KV(LockstepCluster):
    def build(self, node_id: str, env: FakeEnv) -> Any:
        return GossipKVNode(node_id, env, self.ids, dict(self.options))

    def request(self, node_id: str, kind: str, key: str = "", value: Any = None, **kw: Any) -> Any:
        env = self.envs[node_id]
        self.seq = getattr(self, "seq", 0) + 1
        self.nodes[node_id].on_request(
            ClientRequest(client_id="c", seq=self.seq, op=Op(kind=kind, key=key, value=value), **kw)
        )
        return env.delivered.pop()


# ---------------------------------------------------------------------- the merge
versions = st.lists(
    st.builds(
        lambda key, t, c, origin, deleted: KVEntry(
            key=key, counter=pack(t, c), origin=origin, value=None if deleted else f"{key}{t}{c}{origin}",
            deleted=deleted,
        ),
        st.sampled_from("abcd"), st.integers(0, 5), st.integers(0, 2), st.sampled_from("xyz"), st.booleans(),
    ),
    max_size=25,
)  # fmt: skip


def merged(*groups: list[KVEntry]) -> tuple:
    replica = Replica()
    for group in groups:
        replica.merge_all(group)
    return replica.digest(), replica.root()


def merge_replicas(left: list[KVEntry], right: list[KVEntry]) -> list[KVEntry]:
    """The state two replicas reach by exchanging everything: as a list of versions."""
    replica = Replica()
    replica.merge_all(left)
    replica.merge_all(right)
    return list(replica.all_entries())


@settings(max_examples=80, deadline=None)
@given(a=versions, b=versions, c=versions)
def test_merge_is_commutative_associative_and_idempotent(a: list, b: list, c: list) -> None:
    ab, ba = merge_replicas(a, b), merge_replicas(b, a)
    assert merged(ab) == merged(ba)  # commutative
    assert merged(merge_replicas(ab, c)) == merged(merge_replicas(a, merge_replicas(b, c)))  # associative
    assert merged(merge_replicas(ab, ab)) == merged(ab)  # idempotent
    assert merged(a, a, a) == merged(a)
    # Last-writer-wins by (hlc, node id): each key holds its greatest version.
    best: dict[str, tuple[int, str]] = {}
    for e in [*a, *b]:
        best[e.key] = max(best.get(e.key, e.stamp), e.stamp)
    assert {e.key: e.stamp for e in ab} == best


@settings(max_examples=60, deadline=None)
@given(a=versions, keys=st.lists(st.sampled_from("abcd"), max_size=4))
def test_dropping_keys_leaves_the_tree_of_a_replica_that_never_held_them(a: list, keys: list) -> None:
    replica = Replica()
    replica.merge_all(a)
    for key in keys:
        replica.drop(key)
    fresh = Replica()
    fresh.merge_all(e for e in replica.all_entries())
    assert replica.digest() == fresh.digest()
    assert replica.root() == fresh.root() and replica.hashes == fresh.hashes and replica.sizes == fresh.sizes


# ---------------------------------------------------------------------- writes and reads
def test_a_write_is_stamped_by_the_hlc_above_what_the_node_saw() -> None:
    kv = KV(["a", "b"])
    kv.envs["a"].clock = 1.0
    first = kv.request("a", "put", "k", "one").result
    assert unpack(first["version"]) == (1_000, 0) and first["prev"] is None
    # b's clock is behind, but it saw a's version: its overwrite is stamped above it.
    kv.fire("a", "rumor")
    kv.deliver_all()
    kv.envs["b"].clock = 0.5
    second = kv.request("b", "put", "k", "two").result
    assert second["version"] > first["version"] and second["prev"] == [first["version"], "a"]
    assert kv.request("b", "get", "k").result["value"] == "two"


def test_physical_clock_only_lets_a_later_overwrite_lose() -> None:
    """The bug knob: b's slow clock stamps its overwrite below the version it replaced."""
    kv = KV(["a", "b"], bugs=("physical-clock-only",))
    kv.envs["a"].clock = 1.0
    first = kv.request("a", "put", "k", "one").result
    kv.fire("a", "rumor")
    kv.deliver_all()
    kv.envs["b"].clock = 0.5
    second = kv.request("b", "put", "k", "two").result
    assert second["version"] < first["version"]
    assert kv.request("b", "get", "k").result["value"] == "one"  # the acknowledged write lost


def test_the_answer_waits_until_the_write_is_durable() -> None:
    env = FakeEnv("a", storage=SimStorage(), manual=True)
    node = GossipKVNode("a", env, ["a"], {})
    node.on_start()
    env.end_batch()
    node.on_request(ClientRequest(client_id="c", seq=1, op=Op(kind="put", key="k", value="v")))
    env.end_batch()
    assert env.delivered == []  # held behind the sync
    assert any(isinstance(r, KVEntry) for r in env.storage.log_records())
    env.complete_sync()
    assert env.delivered and env.delivered[0].ok


def test_delete_writes_a_tombstone_that_an_older_put_cannot_undo() -> None:
    kv = KV(["a", "b"], rumor=False)
    kv.envs["a"].clock = kv.envs["b"].clock = 1.0
    kv.request("a", "put", "k", "old")
    old = kv.nodes["a"].replica.get("k")
    kv.envs["b"].clock = 2.0
    kv.nodes["b"].on_message("a", Rumor(entries=(old,)))
    answer = kv.request("b", "delete", "k").result
    assert answer["deleted"] is True
    assert kv.request("b", "get", "k").result == {"value": None, "version": 0}
    kv.nodes["b"].on_message("a", Rumor(entries=(old,)))  # the old put arrives again
    assert kv.request("b", "get", "k").result["version"] == 0
    assert kv.request("b", "list", "").result["items"] == ()
    assert kv.nodes["b"].node_status().details["tombstones"] == 1


def test_tombstones_are_collected_after_the_ttl() -> None:
    kv = KV(["a"], tombstone_ttl=10.0)
    kv.envs["a"].clock = 1.0
    kv.request("a", "put", "k", "v")
    kv.request("a", "delete", "k")
    kv.envs["a"].clock = 5.0
    kv.request("a", "put", "other", "x")  # moves the clock on
    kv.fire("a", ANTI_ENTROPY_TIMER)
    assert kv.nodes["a"].replica.get("k") is not None  # 4 s old: kept
    kv.envs["a"].clock = 12.0
    kv.request("a", "put", "other", "y")
    kv.fire("a", ANTI_ENTROPY_TIMER)
    node = kv.nodes["a"]
    assert node.replica.get("k") is None and node.collected == 1
    assert node.values() == {"other": "y"}


def test_list_is_local_sorted_and_capped() -> None:
    kv = KV(["a"])
    for key in ("p/b", "p/a", "q", "p/c"):
        kv.request("a", "put", key, key.upper())
    kv.request("a", "delete", "p/c")
    result = kv.request("a", "list", "p/", 1).result
    assert [item[:2] for item in result["items"]] == [("p/a", "P/A")] and result["truncated"] is True


def test_cas_and_strong_reads_are_refused_with_a_reason() -> None:
    kv = KV(["a"])
    cas = kv.request("a", "cas", "k", "v")
    assert not cas.ok and cas.error == CAS_REFUSED
    read = kv.request("a", "get", "k", consistency="linearizable")
    assert not read.ok and read.error == READ_REFUSED
    assert kv.request("a", "get", "k", consistency="stale").ok


def test_restart_replays_storage_and_the_clock_stays_ahead() -> None:
    kv = KV(["a"])
    kv.envs["a"].clock = 3.0
    before = kv.request("a", "put", "k", "v").result["version"]
    node = kv.restart("a")
    kv.envs["a"].clock = 1.0  # a clock that went back
    assert node.values() == {"k": "v"}
    assert kv.request("a", "put", "k", "w").result["version"] > before


def test_status_is_honest_no_leader_every_node_a_replica() -> None:
    kv = KV(["a", "b"])
    status = kv.nodes["a"].node_status()
    assert status.role == "replica" and status.leader is None and status.generation_name == "hlc"
    assert kv.envs["a"].recorded("role")[-1] == {"role": "replica"}


def test_kv_entries_survive_the_codec_and_bad_ones_are_dropped() -> None:
    entry = KVEntry(key="k", counter=pack(5, 1), origin="a", value=None, deleted=True, prev_counter=3,
                    prev_origin="b")  # fmt: skip
    assert decode(encode(entry)) == entry and entry.replaces == (3, "b")
    kv = KV(["a", "b"])
    kv.nodes["a"].on_message("b", Rumor(entries=(KVEntry(key="k", counter="x", origin="b"),)))  # type: ignore[arg-type]
    assert kv.nodes["a"].dropped == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tombstone_ttl": -1}, "tombstone_ttl"),
        ({"nope": 1}, "unknown gossip-kv option"),
        ({"fanout": 0}, "fanout"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_options(options)


def test_a_stamp_near_the_int64_limit_is_dropped() -> None:
    """Found by the peer-port fuzzing: a stamp of 2^63-1 moved the node's clock to it, and
    its next write was stamped 2^63, which no peer can decode (and so neither its log)."""
    kv = KV(["a", "b"])
    a = kv.nodes["a"]
    far = KVEntry(key="k", counter=2**63 - 1, origin="b", value="x")
    a.on_message("b", decode(encode(Rumor(entries=(far,)))))
    assert a.dropped == 1 and a.replica.get("k") is None
    version = kv.request("a", "put", "k", "v").result["version"]
    assert decode(encode(a.replica.get("k"))).counter == version < 2**62
