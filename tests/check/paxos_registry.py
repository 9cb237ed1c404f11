"""Make the default registry know basic-paxos and fast-paxos in tests.

Until the lead wires them into ``core.registry.default_registry`` (and from then on
this adds nothing), the simulator and ``run_scenario`` build their registry here.
"""

from __future__ import annotations

from consensuskit.core.registry import Registry, default_registry


def paxos_registry() -> Registry:
    from consensuskit.protocols.paxos.basic import basic_paxos_spec
    from consensuskit.protocols.paxos.fast import fast_paxos_spec

    registry = default_registry()
    for spec in (basic_paxos_spec(), fast_paxos_spec()):
        if spec.name not in registry.names():
            registry.add(spec)
    return registry


def wired() -> bool:
    """True once the shipped registry has both protocols (sweeps may then use workers)."""
    names = default_registry().names()
    return "basic-paxos" in names and "fast-paxos" in names


def install(monkeypatch) -> None:
    import consensuskit.sim.simulation as simulation

    registry = paxos_registry()
    monkeypatch.setattr(simulation, "default_registry", lambda: registry)
