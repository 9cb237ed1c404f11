"""Malformed input from peers is dropped and counted, never raised out of a handler."""

from __future__ import annotations

from consensuskit.protocols.swim import Update
from consensuskit.protocols.swim.messages import Ping, PushPull
from consensuskit.sim import SimConfig, Simulation


def test_malformed_updates_and_messages_are_counted():
    sim = Simulation(SimConfig(protocol="swim", node_ids=("n1", "n2", "n3"), clients=0))
    sim.run_until(1.0)
    junk = (
        "junk",
        Update(kind="zombie", member="n2", incarnation=0),
        Update(kind="alive", member="", incarnation=0),
        Update(kind="suspect", member="n2", incarnation=2**63 - 1, accuser="n3"),  # memberlist #358
        Update(kind="alive", member="n2", incarnation=-1),
    )
    node = sim.nodes["n1"]
    sim.invoke("n1", lambda n: n.on_message("n2", Ping(seq=7, target="n1", updates=junk)), "junk ping")
    sim.invoke("n1", lambda n: n.on_message("n2", Ping(seq=8, target="n2")), "misdirected ping")
    sim.invoke("n1", lambda n: n.on_message("n2", PushPull(states=junk, reply=False)), "junk push-pull")
    sim.invoke("n1", lambda n: n.on_message("n2", object()), "not a message")
    sim.invoke(
        "n1", lambda n: n.on_message("n2", Ping(seq=9, target="n1", updates="no tuple")), "bad updates"
    )
    assert node.malformed == 5 + 1 + 5 + 1 + 1
    assert node.view()["n2"] == ("alive", 0)  # nothing of the junk took effect
    sim.run_until(5.0)  # and the member carries on
    assert not sim.violations


def test_one_update_cannot_put_a_member_where_it_cannot_refute():
    """A suspicion at incarnation 2^62-1 (under the old bound) was taken: the member's
    refutation needs 2^62, which every node refused, so the member could never refute
    and was declared dead.  An incarnation more than a step above what the node knows of
    the member is ignored now (protocols/common/number_bounds.py); one within it is not."""
    from consensuskit.protocols.common.number_bounds import CEILING, STEP

    # Unchecked: a forged suspicion is a lie the incarnation-owner invariant would report.
    sim = Simulation(
        SimConfig(protocol="swim", node_ids=("n1", "n2", "n3"), clients=0, check_every_step=False)
    )
    sim.run_until(1.0)
    node = sim.nodes["n1"]
    known = node.view()["n2"][1]
    for incarnation in (CEILING - 1, known + STEP + 1):
        far = (Update(kind="suspect", member="n2", incarnation=incarnation, accuser="n3"),)
        sim.invoke("n1", lambda n, u=far: n.on_message("n3", Ping(seq=7, target="n1", updates=u)), "far")
        assert node.view()["n2"] == ("alive", known), incarnation
    assert node.malformed == 2
    near = (Update(kind="suspect", member="n2", incarnation=known + STEP, accuser="n3"),)
    sim.invoke("n1", lambda n: n.on_message("n3", Ping(seq=9, target="n1", updates=near)), "near")
    assert node.view()["n2"] == ("suspect", known + STEP)
    sim.run_until(10.0)  # n2 hears of it and refutes above it
    assert sim.nodes["n2"].incarnation > known + STEP and node.view()["n2"][0] == "alive"
