"""The composition root: every protocol and service this build ships, with its checker
and scenarios.

Rules this module owns:
  * it is the one module that names every protocol; it sits above every layer (core,
    protocols, check, sim, scenarios, server) and nothing below reads its lists except
    through ``default_registry()`` / ``default_catalog()``;
  * a protocol's invariant checker lives in ``check/`` and is wired to its ``ProtocolSpec``
    here (``Catalog.add_protocol(checker=...)``): protocols never import ``check/``;
  * scenarios are registered per protocol here; ``consensuskit scenario list/run``, the
    demo and the docs' protocol tables read them from the catalog, in registration order;
    a family whose scenarios run no catalog protocol (a direct, round-based computation
    such as the Byzantine generals) registers them with ``add_scenarios(family, ...)``:
    they name the family as their ``protocol`` and list after the protocols' scenarios;
  * scenario modules (which import ``sim/``) are imported when asked for, never when the
    catalog is built: ``sim/`` and ``server/`` import the catalog for their default
    registry, and an eager import would close a cycle (tests/core/test_layers.py holds
    it); checkers are imported when a simulation builds one, so the catalog stays cheap;
  * no global state: each ``default_catalog()`` call builds a fresh ``Catalog``; a caller
    that wants more protocols (a test's toy, a plug-in) builds its own and adds to it;
  * a protocol's monitor (measurements and end-of-run properties of a simulation,
    ``ProtocolSpec.make_monitor``) is wired here like its checker;
  * a family's own top-level CLI verbs (``consensuskit gossip epidemic``, ``consensuskit
    agent``) are registered here (``add_command``) as lazy ``module:attr`` references that
    cli.py mounts: cli.py names no family;
  * how viewers draw each protocol (``ProtocolSpec.view``: role names, heartbeat
    messages, the generation's name, phases and their colours, the protocol panel) is
    stated here, in ``VIEWS``, and attached by ``add_protocol``;
  * services (core/service.py) are registered here too (``add_service``) and travel in
    the ``Registry`` the simulator and the server get; a registry without any (a test's)
    borrows the built-in ones (``service_for``).

Plug-in point: when the environment variable ``CONSENSUSKIT_CATALOG`` names a
``module:function``, ``default_catalog()`` / ``default_registry()`` use what that function
returns: a ``Catalog`` (it may start from ``builtin_catalog()`` and add protocols with
their checkers and scenarios, and services) or a bare ``Registry``.  Subprocesses inherit it, so a
sweep's workers and a server started by ``consensuskit up`` see the same catalog as the
command that started them.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consensuskit.core.registry import ProtocolFlag, ProtocolSpec, Registry, ViewPhase, ViewSpec
from consensuskit.core.service import ServiceSpec
from consensuskit.protocols.byzantine import generals_spec
from consensuskit.protocols.commit import paxos_commit_spec, three_pc_spec, two_pc_spec
from consensuskit.protocols.gossip import gossip_kv_spec, gossip_spec
from consensuskit.protocols.paxos import basic_paxos_spec, fast_paxos_spec, multipaxos_spec
from consensuskit.protocols.pbft import pbft_spec
from consensuskit.protocols.raft import raft_spec
from consensuskit.protocols.sharded import sharded_spec
from consensuskit.protocols.swim import swim_spec
from consensuskit.protocols.zab import zab_spec
from consensuskit.services.etcd import etcd_service
from consensuskit.services.eventual_kv import eventual_kv_service
from consensuskit.services.gossip_map import gossip_map_service
from consensuskit.services.kv import kv_service
from consensuskit.services.membership import membership_service
from consensuskit.services.shard_kv import shard_kv_service
from consensuskit.services.txn import txn_service

if TYPE_CHECKING:
    from consensuskit.scenarios.base import Scenario

CATALOG_ENV = "CONSENSUSKIT_CATALOG"

CheckerFactory = Callable[[frozenset[str]], Any]
ScenarioLoader = Callable[[], Sequence["Scenario"]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolEntry:
    """One protocol as the catalog lists it."""

    spec: ProtocolSpec  # make_checker already wired to the checker in check/
    family: str  # the package under protocols/ ("raft", "paxos")
    readme: str  # the protocol's README, relative to the repository root
    checker: str  # the check/ module holding its invariants (docs)
    scenarios: ScenarioLoader | None = None
    demo: bool = False  # `consensuskit demo` runs it on 5 nodes with every fault

    @property
    def name(self) -> str:
        return self.spec.name


class Catalog:
    """Protocols (with checkers and scenarios) by name, in registration order."""

    def __init__(self) -> None:
        self._protocols: dict[str, ProtocolEntry] = {}
        self._services: dict[str, ServiceSpec] = {}
        self._commands: dict[str, str] = {}
        self._family_scenarios: dict[str, ScenarioLoader] = {}

    def add_command(self, name: str, reference: str) -> None:
        """A top-level CLI verb: ``reference`` is ``module:attr`` naming a typer.Typer (a
        command group) or a function (one command); resolved when the CLI starts."""
        if name in self._commands:
            raise ValueError(f"command {name!r} registered twice")
        module, sep, attr = reference.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"command {name!r}: expected MODULE:ATTR, got {reference!r}")
        self._commands[name] = reference

    def commands(self) -> dict[str, str]:
        """Each family command's name and ``module:attr`` reference, in registration order."""
        return dict(self._commands)

    def add_service(self, spec: ServiceSpec) -> ServiceSpec:
        if spec.name in self._services:
            raise ValueError(f"service {spec.name!r} registered twice")
        self._services[spec.name] = spec
        return spec

    def services(self) -> list[ServiceSpec]:
        return list(self._services.values())

    # ------------------------------------------------------------------ building
    def add_protocol(
        self,
        spec: ProtocolSpec,
        *,
        family: str,
        readme: str = "",
        checker: CheckerFactory | None = None,
        checker_module: str = "",
        monitor: Callable[[Any], Any] | None = None,
        scenarios: ScenarioLoader | None = None,
        demo: bool = False,
        view: ViewSpec | None = None,
    ) -> ProtocolEntry:
        if spec.name in self._protocols:
            raise ValueError(f"protocol {spec.name!r} registered twice")
        view = view if view is not None else VIEWS.get(spec.name)
        if view is not None:
            spec = dataclasses.replace(spec, view=view)
        if checker is not None:
            spec = dataclasses.replace(spec, make_checker=checker)
        if monitor is not None:
            spec = dataclasses.replace(spec, make_monitor=monitor)
        entry = ProtocolEntry(
            spec=spec, family=family, readme=readme, checker=checker_module, scenarios=scenarios, demo=demo
        )
        self._protocols[spec.name] = entry
        return entry

    # ------------------------------------------------------------------ protocols
    def protocols(self) -> list[ProtocolEntry]:
        return list(self._protocols.values())

    def protocol(self, name: str) -> ProtocolEntry:
        try:
            return self._protocols[name]
        except KeyError:
            raise KeyError(
                f"unknown protocol {name!r}; valid: {', '.join(sorted(self._protocols))}"
            ) from None

    def registry(self) -> Registry:
        """The specs the simulator and the server run by name."""
        registry = Registry()
        for entry in self._protocols.values():
            registry.add(entry.spec)
        for service in self._services.values():
            registry.add_service(service)
        return registry

    def demo_protocols(self) -> list[str]:
        return [e.name for e in self._protocols.values() if e.demo]

    # ------------------------------------------------------------------ scenarios
    def add_scenarios(self, family: str, loader: ScenarioLoader) -> None:
        """Scenarios of ``family`` that run no catalog protocol (their ``protocol`` is
        ``family``); listed after every protocol's scenarios, in registration order."""
        if family in self._family_scenarios or family in self._protocols:
            raise ValueError(f"scenarios of {family!r} registered twice")
        self._family_scenarios[family] = loader

    def scenario_families(self) -> list[str]:
        """The families registered with ``add_scenarios``, in registration order."""
        return list(self._family_scenarios)

    def scenarios(self, protocol: str | None = None) -> dict[str, Scenario]:
        """Every scenario by id (of one protocol, or of one family's ``add_scenarios``,
        if given), protocols in registration order, then the families'.

        Raises ValueError when a loader hands back a scenario of another protocol or an id
        that is already taken: a scenario belongs to exactly one catalog entry.
        """
        loaders: list[tuple[str, ScenarioLoader | None]]
        if protocol is not None and protocol in self._family_scenarios:
            loaders = [(protocol, self._family_scenarios[protocol])]
        elif protocol is not None:
            loaders = [(protocol, self.protocol(protocol).scenarios)]
        else:
            loaders = [(e.name, e.scenarios) for e in self.protocols()]
            loaders += list(self._family_scenarios.items())
        found: dict[str, Scenario] = {}
        for owner, loader in loaders:
            for scenario in loader() if loader else ():
                if scenario.protocol != owner:
                    raise ValueError(
                        f"scenario {scenario.id!r} runs {scenario.protocol!r} but is registered "
                        f"under {owner!r}"
                    )
                if scenario.id in found:
                    raise ValueError(f"scenario {scenario.id!r} registered twice")
                found[scenario.id] = scenario
        return found

    def scenario(self, scenario_id: str) -> Scenario:
        scenarios = self.scenarios()
        try:
            return scenarios[scenario_id]
        except KeyError:
            raise KeyError(f"unknown scenario {scenario_id!r}; valid: {', '.join(scenarios)}") from None


# ---------------------------------------------------------------------- checkers
# Imported when a simulation asks for one: check/ imports the protocols' public names.
def _raft_checker(bugs: frozenset[str]) -> Any:
    from consensuskit.check.raft import RaftChecker

    return RaftChecker(bugs)


def _multipaxos_checker(bugs: frozenset[str]) -> Any:
    from consensuskit.check.multipaxos import MultiPaxosChecker

    return MultiPaxosChecker()


def _zab_checker(bugs: frozenset[str]) -> Any:
    from consensuskit.check.zab import ZabChecker

    return ZabChecker(bugs)


def _swim_checker(bugs: frozenset[str]) -> Any:
    from consensuskit.check.swim import SwimChecker

    return SwimChecker(bugs)


def _etcd_monitor(config: Any) -> Any:
    """The etcd service's lessors and lease checks in a simulation."""
    from consensuskit.check.etcd_leases import LeaseChecker
    from consensuskit.services.etcd_sim_lessor import EtcdSimMonitor

    return EtcdSimMonitor(config, LeaseChecker())


def _swim_monitor(config: Any) -> Any:
    from consensuskit.check.swim_monitor import SwimMonitor

    return SwimMonitor(config)


def _generals_checker(bugs: frozenset[str]) -> Any:
    from consensuskit.check.byzantine import GeneralsChecker

    return GeneralsChecker(bugs)


def _generals_monitor(config: Any) -> Any:
    from consensuskit.check.byzantine import GeneralsMonitor

    return GeneralsMonitor(config)


def _gossip_monitor(config: Any) -> Any:
    from consensuskit.check.gossip import GossipMonitor

    return GossipMonitor(config)


def _gossip_kv_monitor(config: Any) -> Any:
    from consensuskit.check.gossip_kv import GossipKVMonitor

    return GossipKVMonitor(config)


def _paxos_checker(bugs: frozenset[str]) -> Any:
    from consensuskit.check.paxos import PaxosChecker

    return PaxosChecker()


def _commit_checker(protocol: str) -> CheckerFactory:
    def make(bugs: frozenset[str]) -> Any:
        from consensuskit.check.commit import CommitChecker

        return CommitChecker(protocol, bugs)

    return make


def _commit_monitor(config: Any) -> Any:
    from consensuskit.check.commit import CommitMonitor

    return CommitMonitor(config)


PARTICIPANTS_FLAG = ProtocolFlag(
    name="participants",
    kind=int,
    default=0,
    help="how many of the nodes are participants, each owning a key range (0: all)",
)


def _pbft_checker(bugs: frozenset[str]) -> Any:
    from consensuskit.check.pbft import PbftChecker

    return PbftChecker()


def _pbft_monitor(config: Any) -> Any:
    from consensuskit.check.pbft import PbftMonitor

    return PbftMonitor(config)


def _sharded_checker(bugs: frozenset[str]) -> Any:
    from consensuskit.check.sharded import ShardedChecker

    return ShardedChecker(bugs)


def _sharded_monitor(config: Any) -> Any:
    from consensuskit.check.sharded import ShardedMonitor

    return ShardedMonitor(config)


# --------------------------------------------------------------------- scenarios
def _scenarios_of(module: str) -> ScenarioLoader:
    def load() -> Sequence[Scenario]:
        return importlib.import_module(f"consensuskit.scenarios.{module}").SCENARIOS

    return load


def _scenarios_for(module: str, protocol: str) -> ScenarioLoader:
    """A module's scenarios of one protocol (a family module holding several)."""

    def load() -> Sequence[Scenario]:
        scenarios = importlib.import_module(f"consensuskit.scenarios.{module}").SCENARIOS
        return [s for s in scenarios if s.protocol == protocol]

    return load


# -------------------------------------------------------------------------- views
# How the browser view draws each protocol (view/, ProtocolSpec.view).  Role names and
# generation fields are what each node records with env.record("role", ...); message
# names are the classes' names as the trace writes them ("type").
_PAXOS_PHASE_1 = ViewPhase(
    name="phase 1 (prepare)", messages=("Prepare", "Promise", "Nack"), colour="#d97706"
)
_PAXOS_PHASE_2 = ViewPhase(name="phase 2 (accept)", messages=("Accept", "Accepted"), colour="#2563eb")
_BASIC_PAXOS_PHASES = (
    _PAXOS_PHASE_1,
    _PAXOS_PHASE_2,
    ViewPhase(name="learn", messages=("Chosen", "CatchUp"), colour="#059669"),
)
_COMMIT_VOTES = ViewPhase(name="vote", messages=("Prepare", "Vote"), colour="#d97706")
_COMMIT_DECISION = ViewPhase(
    name="decision", messages=("Commit", "Abort", "Ack", "DecisionRequest", "DecisionReply"), colour="#059669"
)
_GOSSIP_VIEW: dict[str, Any] = {
    "panel": "members",
    "phases": (
        ViewPhase(name="rumour", messages=("Rumor", "RumorFeedback", "RumorRequest"), colour="#dc2626"),
        ViewPhase(
            name="anti-entropy",
            messages=("DigestProbe", "LeafDigest", "Want", "Entries", "FullState", "StateRequest"),
            colour="#2563eb",
        ),
    ),
    "rumours": ("Rumor", "Entries", "FullState"),
    # One rumour version: key@counter.origin (gossip) or key@wall+logical.origin (gossip-kv).
    "rumour_pattern": r"(?<id>[^\s\[\]@]+@\d+(?:\+\d+)?\.[^\s\[\]]+)",
}
VIEWS: dict[str, ViewSpec] = {
    "raft": ViewSpec(
        roles=("leader", "candidate", "pre-candidate", "follower"),
        leader_roles=("leader",),
        generation="term",
        heartbeats=("Heartbeat", "HeartbeatResponse"),
        entry="entry",
        panel="log",
        phases=(
            ViewPhase(
                name="election",
                messages=("RequestVote", "RequestVoteResponse", "TimeoutNow"),
                colour="#d97706",
            ),
            ViewPhase(
                name="replication", messages=("AppendEntries", "AppendEntriesResponse"), colour="#2563eb"
            ),
            ViewPhase(
                name="snapshot", messages=("InstallSnapshot", "InstallSnapshotResponse"), colour="#7c3aed"
            ),
        ),
    ),
    "multipaxos": ViewSpec(
        roles=("leader", "candidate", "follower"),
        leader_roles=("leader",),
        generation="ballot",
        generation_field="term",
        heartbeats=("Heartbeat", "HeartbeatAck"),
        entry="slot",
        panel="log",
        phases=(
            _PAXOS_PHASE_1,
            _PAXOS_PHASE_2,
            ViewPhase(name="learn", messages=("Learn", "InstallSnapshot"), colour="#059669"),
        ),
    ),
    "basic-paxos": ViewSpec(
        roles=("proposer+acceptor+learner", "proposer", "acceptor", "learner"),
        entry="slot",
        panel="log",
        phases=_BASIC_PAXOS_PHASES,
    ),
    "fast-paxos": ViewSpec(
        roles=("proposer+acceptor+learner", "proposer", "acceptor", "learner"),
        entry="slot",
        panel="log",
        phases=(
            *_BASIC_PAXOS_PHASES,
            ViewPhase(name="fast round", messages=("AcceptAny", "Propose"), colour="#7c3aed"),
        ),
    ),
    "zab": ViewSpec(
        roles=("leader", "following", "observing", "looking"),
        leader_roles=("leader",),
        generation="epoch",
        heartbeats=("Ping", "PingAck"),
        entry="txn",
        panel="log",
        phases=(
            ViewPhase(name="election", messages=("Notification",), colour="#d97706"),
            ViewPhase(
                name="discovery + sync",
                messages=("FollowerInfo", "LeaderInfo", "AckEpoch", "NewLeader", "UpToDate", "Snapshot"),
                colour="#7c3aed",
            ),
            ViewPhase(name="broadcast", messages=("Proposal", "Ack", "Commit", "Inform"), colour="#2563eb"),
        ),
    ),
    "pbft": ViewSpec(
        roles=("leader", "backup", "view-change"),
        leader_roles=("leader",),
        generation="view",
        entry="request",
        panel="log",
        phases=(
            ViewPhase(name="pre-prepare", messages=("PrePrepare",), colour="#d97706"),
            ViewPhase(name="prepare", messages=("Prepare",), colour="#2563eb"),
            ViewPhase(name="commit", messages=("Commit",), colour="#059669"),
            ViewPhase(name="view change", messages=("ViewChange", "NewView"), colour="#dc2626"),
            ViewPhase(
                name="checkpoint", messages=("Checkpoint", "FetchState", "StateReply"), colour="#7c3aed"
            ),
        ),
    ),
    "2pc": ViewSpec(
        roles=("coordinator", "participant"),
        generation="epoch",
        panel="votes",
        phases=(_COMMIT_VOTES, _COMMIT_DECISION),
        vote_pattern=r"^Vote (?<txn>\S+) (?<vote>yes|no)",
        yes_votes=("yes",),
    ),
    "3pc": ViewSpec(
        roles=("coordinator", "participant"),
        generation="epoch",
        panel="votes",
        phases=(
            _COMMIT_VOTES,
            ViewPhase(name="pre-commit", messages=("PreCommit", "PreCommitAck"), colour="#2563eb"),
            _COMMIT_DECISION,
            ViewPhase(name="termination", messages=("StateRequest", "StateReport"), colour="#dc2626"),
        ),
        vote_pattern=r"^Vote (?<txn>\S+) (?<vote>yes|no)",
        yes_votes=("yes",),
    ),
    "paxos-commit": ViewSpec(
        roles=("leader", "participant+acceptor", "acceptor", "participant"),
        generation="epoch",
        panel="votes",
        phases=(
            ViewPhase(name="prepare", messages=("Prepare",), colour="#d97706"),
            ViewPhase(name="vote (phase 2)", messages=("Phase2a", "Phase2b"), colour="#2563eb"),
            ViewPhase(name="recovery (phase 1)", messages=("Phase1a", "Phase1b", "Nack"), colour="#dc2626"),
            _COMMIT_DECISION,
        ),
        vote_pattern=r"^Phase2a (?<txn>\S+) rm=(?<rm>\S+) \S+ (?<vote>prepared|aborted)",
        yes_votes=("prepared",),
    ),
    # S Raft groups per host: every message is a GroupMessage (its summary names the
    # group), and role records carry a "group" field; the log panel shows the latest.
    "sharded-raft": ViewSpec(
        roles=("leader", "candidate", "pre-candidate", "follower"),
        leader_roles=("leader",),
        generation="term",
        entry="entry",
        panel="log",
        phases=(ViewPhase(name="group traffic", messages=("GroupMessage",), colour="#2563eb"),),
    ),
    "gossip": ViewSpec(roles=("member",), **_GOSSIP_VIEW),
    # The AP store on the same epidemics: its stamps are hybrid logical clocks
    # (key@wall+logical.origin); the rumour's counter is the wall part.
    "gossip-kv": ViewSpec(roles=("replica",), **_GOSSIP_VIEW),
    "swim": ViewSpec(
        heartbeats=("Ping", "Ack"),
        panel="members",
        phases=(
            ViewPhase(name="probe", messages=("Ping", "Ack", "PingReq", "Nack"), colour="#2563eb"),
            ViewPhase(name="dissemination", messages=("Gossip", "PushPull"), colour="#dc2626"),
        ),
    ),
}


# ---------------------------------------------------------------------- the build
def builtin_catalog() -> Catalog:
    """Every protocol this build ships, in the order of SCENARIOS.md (Paxos first)."""
    catalog = Catalog()
    paxos_readme = "src/consensuskit/protocols/paxos/README.md"
    catalog.add_protocol(
        basic_paxos_spec(),
        family="paxos",
        readme=paxos_readme,
        checker=_paxos_checker,
        checker_module="check/paxos.py",
        scenarios=_scenarios_of("paxos"),
    )
    catalog.add_protocol(
        fast_paxos_spec(),
        family="paxos",
        readme=paxos_readme,
        checker=_paxos_checker,
        checker_module="check/paxos.py",
        scenarios=_scenarios_of("fastpaxos"),
    )
    catalog.add_protocol(
        multipaxos_spec(),
        family="paxos",
        readme=paxos_readme,
        checker=_multipaxos_checker,
        checker_module="check/multipaxos.py",
        scenarios=_scenarios_of("multipaxos"),
        demo=True,
    )
    catalog.add_protocol(
        raft_spec(),
        family="raft",
        readme="src/consensuskit/protocols/raft/README.md",
        checker=_raft_checker,
        checker_module="check/raft.py",
        scenarios=_scenarios_of("raft"),
        demo=True,
    )
    commit_readme = "src/consensuskit/protocols/commit/README.md"
    for spec in (two_pc_spec(), three_pc_spec(), paxos_commit_spec()):
        catalog.add_protocol(
            dataclasses.replace(spec, flags=(PARTICIPANTS_FLAG,)),
            family="commit",
            readme=commit_readme,
            checker=_commit_checker(spec.name),
            checker_module="check/commit.py",
            monitor=_commit_monitor,
            scenarios=_scenarios_for("commit", spec.name),
        )
    catalog.add_protocol(
        gossip_spec(),
        family="gossip",
        readme="src/consensuskit/protocols/gossip/README.md",
        checker_module="check/gossip.py",
        monitor=_gossip_monitor,
        scenarios=_scenarios_of("gossip"),
    )
    catalog.add_command("gossip", "consensuskit.cli_gossip:app")
    # The AP store beside the linearizable ones (issue 13): the kv routes, no
    # linearizability model; its monitor checks convergence and measures lost writes.
    catalog.add_protocol(
        gossip_kv_spec(),
        family="gossip",
        readme="src/consensuskit/protocols/gossip/README.md",
        checker_module="check/gossip_kv.py",
        monitor=_gossip_kv_monitor,
        scenarios=_scenarios_of("gossip_kv"),
    )
    catalog.add_protocol(
        zab_spec(),
        family="zab",
        readme="src/consensuskit/protocols/zab/README.md",
        checker=_zab_checker,
        checker_module="check/zab.py",
        scenarios=_scenarios_of("zab"),
    )
    catalog.add_protocol(
        swim_spec(),
        family="swim",
        readme="src/consensuskit/protocols/swim/README.md",
        checker=_swim_checker,
        checker_module="check/swim.py",
        monitor=_swim_monitor,
        scenarios=_scenarios_of("swim"),
    )
    # The membership agent: SWIM as a real process (agent/).
    catalog.add_command("agent", "consensuskit.agent.commands:agent")
    catalog.add_command("agent-keygen", "consensuskit.agent.commands:agent_keygen")
    catalog.add_command("members", "consensuskit.agent.commands:members")
    catalog.add_command("agent-demo", "consensuskit.agent.commands:agent_demo")
    # The generals run as a direct round-based function, not as a catalog protocol
    # (protocols/byzantine/README.md says why): a family command and scenarios.
    catalog.add_command("byzantine", "consensuskit.cli_byzantine:app")
    catalog.add_scenarios("byzantine", _scenarios_of("byzantine"))
    # Sharded Raft: S Raft groups in each node, transactions across them (bank, kv, txn).
    catalog.add_protocol(
        sharded_spec(raft_spec()),
        family="sharded",
        readme="src/consensuskit/protocols/sharded/README.md",
        checker=_sharded_checker,
        checker_module="check/sharded.py",
        monitor=_sharded_monitor,
        scenarios=_scenarios_of("sharded"),
    )
    catalog.add_command("serializable", "consensuskit.cli_sharded:serializable")
    # PBFT is a replicated log (log=True): it takes the service's state machine and
    # serves every log service; its clients wait for f+1 matching replies (reply_quorum).
    catalog.add_protocol(
        pbft_spec(),
        family="pbft",
        readme="src/consensuskit/protocols/pbft/README.md",
        checker=_pbft_checker,
        checker_module="check/pbft.py",
        monitor=_pbft_monitor,
        scenarios=_scenarios_of("pbft"),
    )
    # Each node's own key pair and its entry in the cluster's public keys file.
    catalog.add_command("node-key", "consensuskit.cli_node_key:node_key")
    add_services(catalog)
    # The browser view of traces and live clusters (view/).
    catalog.add_command("view", "consensuskit.view.commands:view_command")
    # The etcd service's example resource for its locks (services/fenced_store.py).
    catalog.add_command("fenced-store", "consensuskit.services.fenced_store:fenced_store_command")
    return catalog


def add_services(catalog: Catalog | Registry) -> None:
    """Register the services this build ships."""
    catalog.add_service(kv_service())
    catalog.add_service(gossip_map_service())
    catalog.add_service(eventual_kv_service())
    # Its simulation monitor (check/ sits above services: wired here, as protocols' are).
    catalog.add_service(dataclasses.replace(etcd_service(), make_monitor=_etcd_monitor))
    catalog.add_service(membership_service())
    catalog.add_service(txn_service())
    catalog.add_service(shard_kv_service())


def generals_catalog() -> Catalog:
    """The built-in catalog plus the Byzantine generals as a simulated protocol, for
    ``CONSENSUSKIT_CATALOG=consensuskit.catalog:generals_catalog consensuskit sim
    byzantine-generals ...``.  Not in the built-in list: OM(m)/SM(m) assume synchronous
    rounds and lossless links (LSP82 A1-A3), which the generic suites' faults break by
    design, and they serve no client operations (protocols/byzantine/README.md)."""
    catalog = builtin_catalog()
    catalog.add_protocol(
        generals_spec(),
        family="byzantine",
        readme="src/consensuskit/protocols/byzantine/README.md",
        checker=_generals_checker,
        checker_module="check/byzantine.py",
        monitor=_generals_monitor,
    )
    return catalog


def builtin_registry() -> Registry:
    """Every protocol this build ships, as the simulator and the server run them."""
    return builtin_catalog().registry()


def _plugin() -> Catalog | Registry | None:
    """What ``CONSENSUSKIT_CATALOG=module:function`` builds, or None when it is unset."""
    reference = os.environ.get(CATALOG_ENV)
    if not reference:
        return None
    module, _, function = reference.partition(":")
    if not module or not function:
        raise ValueError(f"{CATALOG_ENV}: expected MODULE:FUNCTION, got {reference!r}")
    made = getattr(importlib.import_module(module), function)()
    if not isinstance(made, Catalog | Registry):
        kind = type(made).__name__
        raise TypeError(f"{CATALOG_ENV}={reference} returned {kind}, not a Catalog or Registry")
    return made


def default_catalog() -> Catalog:
    """The built-in catalog, or the plug-in's (see the module docstring); a plug-in's bare
    Registry becomes a catalog of its protocols without scenarios."""
    made = _plugin()
    if made is None:
        return builtin_catalog()
    if isinstance(made, Catalog):
        return made
    catalog = Catalog()
    for name in made.names():
        spec = made.get(name)
        catalog.add_protocol(spec, family=spec.make_node.__module__.split(".")[-1])
    for name in made.services.names():
        catalog.add_service(made.service(name))
    return catalog


def default_registry() -> Registry:
    """What the simulator and the server run by name: the built-in protocols, or the
    plug-in's (a plug-in's Registry as it is)."""
    made = _plugin()
    if isinstance(made, Registry):
        return made
    return (made or builtin_catalog()).registry()


def service_for(registry: Registry, protocol: ProtocolSpec, name: str | None = None) -> ServiceSpec:
    """The service ``protocol`` runs (``name`` or its default).  A registry built with
    protocols only (as tests do) borrows the built-in services.  KeyError naming the
    valid choices for an unknown service or one the protocol cannot serve."""
    if not registry.services:
        borrowed = Registry()
        add_services(borrowed)
        return borrowed.service_for(protocol, name)
    return registry.service_for(protocol, name)


def service_names(registry: Registry | None = None) -> list[str]:
    registry = registry or default_registry()
    if not registry.services:
        registry = builtin_registry()
    return registry.services.names()
