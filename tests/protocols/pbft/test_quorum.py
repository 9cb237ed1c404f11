"""Certificate sizes for any n (node.byzantine_quorum): ceil((n+f+1)/2), the paper's 2f+1
when n = 3f+1.  2f+1 with more replicas than 3f+1 let two certificates share only the
faulty replica: sweeps of 5 replicas committed two requests at one number."""

from __future__ import annotations

import dataclasses

from consensuskit.protocols.pbft import byzantine_quorum, fault_bound, replica_of, reply_quorum
from consensuskit.sim import Simulation
from tests.check.test_bug_knobs import default_config


def test_two_certificates_share_a_correct_replica_and_the_correct_ones_make_one():
    for n in range(1, 41):
        f, q = fault_bound(n), byzantine_quorum(n)
        assert 2 * q - n >= f + 1, n  # any two share f+1 replicas: one is correct
        assert q <= n - f, n  # the correct replicas alone make a certificate (liveness)
        if n == 3 * f + 1:
            assert q == 2 * f + 1, n
    assert [byzantine_quorum(n) for n in (4, 5, 6, 7, 10)] == [3, 4, 4, 5, 7]


def test_a_five_replica_node_counts_four_and_read_only_clients_wait_for_four():
    config = dataclasses.replace(default_config("pbft"), duration=0.5)
    assert len(config.node_ids) == 5
    sim = Simulation(config)
    sim.run()
    replica = replica_of(sim.nodes["n1"])
    assert replica is not None and replica.quorum == 4
    assert replica._prepare_quorum() == 3 and replica._commit_quorum() == 4
    assert reply_quorum(5, True, {"read_only": True}) == 4
    assert reply_quorum(4, True, {"read_only": True}) == 3
    assert reply_quorum(5, False, {}) == 2
