"""ProtocolSpec.server_options: timer defaults for real processes (issue 18).

A real node shares its CPU and waits on fsyncs, so the simulator's 300 ms election
timeout is too tight there; the server runs etcd's timings unless the operator says
otherwise, and the simulator never sees them."""

from __future__ import annotations

from consensuskit.core.registry import ProtocolSpec


def test_a_spec_without_server_options_runs_the_operators_options_unchanged():
    spec = ProtocolSpec(name="toy", description="", make_node=lambda *a: None)
    assert spec.node_options({"x": 1}) == {"x": 1}


def test_server_options_sit_under_the_operators_options():
    spec = ProtocolSpec(
        name="toy", description="", make_node=lambda *a: None, server_options={"t": 1.0, "h": 0.1}
    )
    assert spec.node_options({}) == {"t": 1.0, "h": 0.1}
    assert spec.node_options({"t": 0.5}) == {"t": 0.5, "h": 0.1}
