"""What a PBFT replica restarted from its disk may do: never number or accept a request
below the checkpoint its view started from, and never answer a read from a state older
than replies it already gave.

Both were found by all-fault sweeps outside the defaults (4 replicas, 30 s, 8 clients):
  * seed 143015 (``checkpoint_interval=4 watermark_window=8 batch_size=1
    max_inflight=8``): n4, primary of view 11, installed the view (min-s 208 while its
    own checkpoint was 200), fetched state 208 and crashed before the checkpoint was on
    disk; restarted as the active primary with low watermark 200 it numbered the next
    request 201, a number committed in view 7 (``committed-keeps-seq``);
  * seed 141000 (``read_only=true``): two replicas that had executed through 220
    restarted at their checkpoint (208): entries 209-220, re-issued by later views and
    not yet committed again, could not be executed from the log.  They answered reads
    from the old state, and with the lagging fourth made 2f+1 replies that matched on a
    value two writes old (not linearizable).
"""

from __future__ import annotations

from typing import Any

from consensuskit.catalog import default_registry, service_for
from consensuskit.cli import build_config
from consensuskit.core.client import ClientRequest, Op
from consensuskit.core.storage import MemoryStorage
from consensuskit.protocols.pbft import replica_of
from consensuskit.protocols.pbft.messages import PrePrepare, ReadOnly, Relay, batch_digest
from consensuskit.protocols.pbft.node import EXECUTED_KEY, VIEW_KEY, PbftNode
from consensuskit.sim import SimConfig, Simulation
from tests.protocols.fake_env import FakeEnv

FOUR = ("n1", "n2", "n3", "n4")


def replica(node_id: str, storage: MemoryStorage, **options: Any) -> tuple[PbftNode, FakeEnv]:
    env = FakeEnv(node_id, storage=storage)
    registry = default_registry()
    spec = registry.get("pbft")
    node = replica_of(spec.build(node_id, env, FOUR, options, service_for(registry, spec, "kv")))
    assert node is not None
    node.on_start()
    env.take()
    return node, env


def put(client: str, seq: int, value: str) -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=Op(kind="put", key="k", value=value))


def get(client: str, seq: int) -> ClientRequest:
    return ClientRequest(client_id=client, seq=seq, op=Op(kind="get", key="k"))


# ------------------------------------------------------------------ the view's floor
def stored_view(view: Any) -> MemoryStorage:
    storage = MemoryStorage()
    storage.put(VIEW_KEY, view)
    return storage


def test_a_restarted_primary_numbers_above_the_checkpoint_its_view_started_from():
    # View 2 (primary n3) started from checkpoint 8; n3's own checkpoint is still 0.
    n3, env = replica("n3", stored_view((2, True, 8)))
    assert (n3.view, n3.active, n3.view_floor, n3.low) == (2, True, 8, 0)
    assert n3.next_seq == 9
    n3.on_request(put("c", 1, "v"))
    numbers = {msg.seq for _, msg in env.take() if isinstance(msg, PrePrepare)}
    # Nothing in (0, 8] (those are settled); 9 lies beyond the window (0, 8] of its
    # old checkpoint, so it waits for the state (a view change fetches it).
    assert numbers <= {9}


def test_a_backup_refuses_a_pre_prepare_at_or_below_its_views_floor():
    n1, _ = replica("n1", stored_view((2, True, 4)))
    n3, n3_env = replica("n3", stored_view((2, True, 4)))
    batch = (put("c", 1, "v"),)
    for seq in (3, 4, 5):
        n3._send("n1", PrePrepare(view=2, seq=seq, digest=batch_digest(batch), batch=batch, replica="n3"))
    for _dst, msg in n3_env.take():
        n1.on_message("n3", msg)
    assert sorted(n1.log) == [5]
    assert n1.dropped == 2


def test_a_view_stored_before_the_floor_was_kept_still_loads():
    n1, _ = replica("n1", stored_view((5, False)))  # the previous release's (view, active)
    assert (n1.view, n1.active, n1.view_floor) == (5, False, 0)


def test_a_new_view_stores_its_floor_with_the_view():
    config = SimConfig(protocol="pbft", node_ids=FOUR, seed=1, options={"checkpoint_interval": 2})
    sim = Simulation(config)
    for i in range(1, 4):
        op = sim.submit(Op(kind="put", key="k", value=str(i)), node="n1")
        assert sim.run_until_true(lambda op=op: op.done, 5.0) and op.status == "ok"
    sim.crash("n1")  # the primary of view 0: the others move to view 1
    op = sim.submit(Op(kind="put", key="k", value="4"), node="n2")
    assert sim.run_until_true(lambda: op.done, 10.0) and op.status == "ok"
    n2 = replica_of(sim.nodes["n2"])
    assert n2 is not None and n2.view >= 1 and n2.view_floor >= 2
    assert n2.env.storage.get(VIEW_KEY) == (n2.view, True, n2.view_floor)


def test_seed_143015_runs_clean():
    config = build_config(
        "pbft",
        4,
        143015,
        30.0,
        8,
        "all",
        None,
        ["batch_size=1", "checkpoint_interval=4", "max_inflight=8", "watermark_window=8"],
    )
    result = Simulation(config).run()
    assert result.invariant_violations == [] and result.linearizable is True


# ------------------------------------------------------------------ the read floor
def test_a_replica_behind_what_it_executed_before_orders_a_read_instead_of_answering():
    storage = MemoryStorage()
    storage.put(EXECUTED_KEY, 3)  # it executed number 3 before its restart
    n2, env = replica("n2", storage, read_only=True)
    assert (n2.executed, n2.read_floor) == (0, 3)
    n2.on_request(get("c", 1))
    assert env.delivered == []
    sent = env.take()
    assert sent and all(isinstance(msg, Relay) for _, msg in sent)  # ordered
    # Another replica's ReadOnly for a read it has not seen: not answered either.
    n2.on_message("n1", ReadOnly(request=get("c", 2), replica="n1"))
    assert env.delivered == []


def test_a_replica_at_its_read_floor_answers_reads_without_ordering():
    fresh, env = replica("n2", MemoryStorage(), read_only=True)
    fresh.on_request(get("c", 1))
    assert [r.result for r in env.delivered] == [{"value": None, "version": 0}]


def test_executing_stores_the_read_floor_only_with_read_only():
    for read_only in (True, False):
        config = SimConfig(protocol="pbft", node_ids=FOUR, seed=2, options={"read_only": read_only})
        sim = Simulation(config)
        op = sim.submit(Op(kind="put", key="k", value="v"), node="n1")
        assert sim.run_until_true(lambda op=op: op.done, 5.0) and op.status == "ok"
        for node_id in FOUR:
            node = replica_of(sim.nodes[node_id])
            assert node is not None
            stored = node.env.storage.get(EXECUTED_KEY)
            assert stored == (node.executed if read_only else None), (read_only, node_id, stored)


def test_seed_141000_runs_clean():
    config = build_config("pbft", 4, 141000, 30.0, 8, "all", None, ["read_only=true"])
    result = Simulation(config).run()
    assert result.invariant_violations == [] and result.linearizable is True
