"""Protocol registry: what the simulator and server need to run a protocol by name.

Neither the simulator nor the server knows any protocol beyond its ``ProtocolSpec``.
This module knows none at all: the list of protocols a build ships is
``consensuskit.catalog`` (core/ imports nothing above it).

Rules this module owns (protocols and services, core/service.py):
  * a *log* protocol (``log=True``) serves every log service: ``make_node`` then takes the
    keyword ``state_machine`` (that service's, fresh per node start) and never builds one;
  * a protocol that is not a log serves the services it names (``services``, its
    default first) and builds what it needs itself;
  * a protocol naming no services serves ``DEFAULT_SERVICE``;
  * the registry also holds the services (``add_service``), so one object tells the
    simulator, the sweeps and the server everything they may run;
  * a protocol's own command-line flags (``flags``) are declared here, once, and every
    command that runs it (``sim``, ``sweep``, ``up``, ``server``) accepts them: a flag's
    value lands in ``SimConfig.flags`` and, for an ``option`` flag, in the protocol
    options the nodes get, in the simulator and on the server alike;
  * ``reply_quorum``: how many nodes must give matching answers before a client trusts
    one (a protocol that tolerates lying nodes), given the run's protocol options (a
    protocol option or bug knob may change it); clients honour it (sim/workload.py);
  * ``server_options``: option defaults for real processes (the server), under the
    operator's own options; the simulator never sees them.  Real clocks share CPUs with
    other work and wait on fsyncs, so timers tuned for simulated time are too tight there
    (etcd: 100 ms heartbeats, a 1 s election timeout).  ``node_options`` merges them;
  * ``view``: how the browser view (view/) and the terminal timeline draw the protocol
    (``ViewSpec``): plain data, sent to the page as JSON; a protocol without one draws
    generically (roles and messages, no protocol panel).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from consensuskit.core.env import Env, NodeId, ProtocolNode
from consensuskit.core.service import DEFAULT_SERVICE, ServiceRegistry, ServiceSpec

FLAG_KINDS = (int, float, str, bool)
_TRUE = ("on", "true", "yes", "1")
_FALSE = ("off", "false", "no", "0")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolFlag:
    """A command-line flag of one protocol: ``--NAME VALUE`` on sim, sweep, up and server.

    ``option`` flags become protocol options (``options[key]``, validated by the spec's
    ``validate_options`` like ``--option KEY=VALUE``); the others only reach the
    simulation (``SimConfig.flags``), e.g. for a monitor that schedules crashes.
    ``names_protocol``: the flag says which protocol is meant, so ``up --NAME V`` without
    ``--protocol`` (on a new cluster) runs the one protocol whose flag it is (sharded
    Raft's ``--shards``: ``consensuskit up --shards 2``).
    """

    name: str  # without dashes: "loss" is --loss
    kind: type  # int, float, str or bool (bool takes on/off, true/false, yes/no, 1/0)
    default: Any
    help: str
    choices: tuple[str, ...] = ()  # for str flags: the values accepted
    option: bool = True
    names_protocol: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FLAG_KINDS:
            raise TypeError(f"flag --{self.name}: kind must be one of int, float, str, bool")

    @property
    def key(self) -> str:
        """The flag's key in ``SimConfig.flags`` and in the options: dashes become _."""
        return self.name.replace("-", "_")

    def parse(self, text: str) -> Any:
        """The value of ``--NAME text``; ValueError (one line, naming what is valid)."""
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(f"--{self.name}: expected one of {', '.join(_TRUE + _FALSE)}, got {text!r}")
        if self.kind is str:
            if self.choices and text not in self.choices:
                raise ValueError(f"--{self.name}: {text!r} is not one of {', '.join(self.choices)}")
            return text
        try:
            return self.kind(text)
        except ValueError:
            raise ValueError(f"--{self.name}: expected {self.kind.__name__}, got {text!r}") from None


def parse_flags(flags: Sequence[ProtocolFlag], args: Sequence[str], protocol: str) -> dict[str, Any]:
    """``--NAME VALUE`` / ``--NAME=VALUE`` pairs of ``args`` -> every flag's value by key,
    defaults filled.  ValueError (one line naming the valid flags) for anything else."""
    by_name = {f.name: f for f in flags}
    values = {f.key: f.default for f in flags}
    valid = ", ".join(f"--{n}" for n in by_name) or "(none)"
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        flag = by_name.get(name[2:]) if name.startswith("--") else None
        if flag is None:
            raise ValueError(f"no such option {name!r} for {protocol}; its own flags: {valid}")
        if eq:
            text = inline
            i += 1
        elif i + 1 < len(args):
            text = args[i + 1]
            i += 2
        else:
            raise ValueError(f"--{flag.name} needs a value")
        values[flag.key] = flag.parse(text)
    return values


def protocol_named_by_flags(specs: Sequence[ProtocolSpec], args: Sequence[str]) -> str | None:
    """The one protocol a ``names_protocol`` flag among ``args`` belongs to (None: none
    is given, or flags of two protocols are)."""
    given = {a[2:].partition("=")[0] for a in args if a.startswith("--")}
    owners = {spec.name for spec in specs for f in spec.flags if f.names_protocol and f.name in given}
    return owners.pop() if len(owners) == 1 else None


def flag_options(flags: Sequence[ProtocolFlag], values: dict[str, Any]) -> dict[str, Any]:
    """The protocol options among parsed flag ``values`` (flags with ``option=True``)."""
    return {f.key: values[f.key] for f in flags if f.option and f.key in values}


VIEW_PANELS: tuple[str, ...] = ("none", "log", "members", "votes")


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewPhase:
    """A named step of the protocol, drawn in one colour: the message types in it."""

    name: str
    messages: tuple[str, ...]
    colour: str  # a CSS colour


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewSpec:
    """What a viewer of traces needs to know of a protocol, as data.

    The fields are read from trace records (sim/trace.py): ``rec`` records of kind
    ``role`` carry ``role``, the generation (``generation_field``) and ``leader``;
    ``commit``/``learned`` records move the log's indices.  Patterns are JavaScript
    regular expressions (named groups ``(?<name>...)``) matched against a message's
    summary; the page runs them, tests run them in Python too.
    """

    roles: tuple[str, ...] = ()  # role names as recorded; the leading ones first
    leader_roles: tuple[str, ...] = ()  # roles meaning "this node leads"
    generation: str = ""  # what the protocol calls it: term, epoch, view, ballot
    generation_field: str = ""  # the role records' field holding it ("" = generation)
    heartbeats: tuple[str, ...] = ()  # message types that are background liveness traffic
    entry: str = ""  # what one log entry is called ("entry", "txn", "request"); "" = no log
    panel: str = "none"  # the protocol panel: one of VIEW_PANELS
    phases: tuple[ViewPhase, ...] = ()
    # panel "members" (gossip): messages of these types spread rumours; each match of
    # rumour_pattern (group "id") in the summary names one rumour version.
    rumours: tuple[str, ...] = ()
    rumour_pattern: str = ""
    # panel "votes" (atomic commit): a message matching vote_pattern (groups "txn",
    # "vote" and optionally "rm", else the sender) is a vote; ``yes_votes`` are the yeses.
    vote_pattern: str = ""
    yes_votes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.panel not in VIEW_PANELS:
            raise ValueError(f"view panel {self.panel!r}: expected one of {', '.join(VIEW_PANELS)}")

    def to_json(self) -> dict[str, Any]:
        """The spec as the page reads it (JSON types only)."""
        return {
            "roles": list(self.roles),
            "leader_roles": list(self.leader_roles),
            "generation": self.generation,
            "generation_field": self.generation_field or self.generation,
            "heartbeats": list(self.heartbeats),
            "entry": self.entry,
            "panel": self.panel,
            "phases": [
                {"name": p.name, "messages": list(p.messages), "colour": p.colour} for p in self.phases
            ],
            "rumours": list(self.rumours),
            "rumour_pattern": self.rumour_pattern,
            "vote_pattern": self.vote_pattern,
            "yes_votes": list(self.yes_votes),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolSpec:
    name: str
    description: str
    # make_node(node_id, env, members, options) -> node; members are the initial voters.
    make_node: Callable[[NodeId, Env, Sequence[NodeId], dict[str, Any]], ProtocolNode]
    # make_checker(bugs) -> an object with check(sim) called after every step, or None.
    make_checker: Callable[[frozenset[str]], Any] | None = None
    bugs: tuple[str, ...] = ()
    default_options: dict[str, Any] = field(default_factory=dict)
    # validate_options(options) raises ValueError naming the valid options.
    validate_options: Callable[[dict[str, Any]], None] | None = None
    # The node honours the platform's REJOINING_KEY (core/storage.py): started on an
    # empty storage with the key set, it takes no part in any quorum until it has been
    # caught up and readmitted, so losing a disk cannot undo a vote or an acknowledged
    # write.  The simulator's ``wipe`` fault applies only to such protocols.
    survives_disk_loss: bool = False
    # A node restarted on an empty data directory forgets nothing the protocol relies on:
    # its peers give its state back (gossip, SWIM).  The server then keeps no book of its
    # peers' data directories (server/incarnations.py): every other protocol's node
    # holds promises (votes, acknowledged writes) that one back on a new directory, other
    # than by --rejoin, has forgotten, so its peers refuse it.
    amnesia_safe: bool = False
    # The fewest nodes the protocol runs with under its default options (fast-paxos: 4,
    # n >= 3f+1 with f = 1); ``consensuskit up`` starts at least this many by default.
    min_nodes: int = 1
    # See the module rules: a log protocol takes state_machine= in make_node.
    log: bool = False
    services: tuple[str, ...] = ()
    # The protocol's own command-line flags (see ProtocolFlag and the module rules).
    flags: tuple[ProtocolFlag, ...] = ()
    # make_monitor(config) -> an object with start(sim) and report(sim) -> dict, and
    # optionally failures(sim) -> list[str]; wired by the catalog like make_checker.
    make_monitor: Callable[[Any], Any] | None = None
    # Byzantine fault tolerance: a client accepts an answer only once this many distinct
    # nodes gave it (matching results), ``reply_quorum(nodes, is_read, options)`` (the
    # protocol options of the run, bugs included); it then sends its retransmissions to
    # every node (PBFT: f+1 replies; a client cannot trust one node).  None: the first ok
    # answer is the answer (every crash-fault protocol).
    reply_quorum: Callable[[int, bool, Mapping[str, Any]], int] | None = None
    # Option defaults on the server only (see the module rules).
    server_options: dict[str, Any] = field(default_factory=dict)
    # How viewers draw it (see ViewSpec); filled in by the catalog.
    view: ViewSpec = field(default_factory=ViewSpec)

    @property
    def default_service(self) -> str:
        return self.services[0] if self.services else DEFAULT_SERVICE

    def serves(self, service: ServiceSpec) -> bool:
        if service.name in self.services:
            return True
        if self.log:
            return service.log
        return not self.services and service.name == DEFAULT_SERVICE

    def node_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """What a server node runs with: ``server_options`` under ``options``."""
        return {**self.server_options, **options}

    def build(
        self,
        node_id: NodeId,
        env: Env,
        members: Sequence[NodeId],
        options: dict[str, Any],
        service: ServiceSpec | None = None,
        state_machine: Any = None,
    ) -> ProtocolNode:
        """A node serving ``service`` (a log protocol gets its state machine: the caller's
        ``state_machine`` when given, e.g. one a simulation's service monitor watches)."""
        if self.log and service is not None:
            if state_machine is None:
                state_machine = service.make_state_machine()
            return self.make_node(  # type: ignore[call-arg]
                node_id, env, members, options, state_machine=state_machine
            )
        return self.make_node(node_id, env, members, options)


class Registry:
    """Name -> spec map; one instance per program, built explicitly (no import magic)."""

    def __init__(self) -> None:
        self._specs: dict[str, ProtocolSpec] = {}
        self.services = ServiceRegistry()

    def add_service(self, spec: ServiceSpec) -> None:
        self.services.add(spec)

    def service(self, name: str) -> ServiceSpec:
        """The service ``name``; KeyError naming the valid ones."""
        return self.services.get(name)

    def service_for(self, protocol: ProtocolSpec, name: str | None = None) -> ServiceSpec:
        """The service ``protocol`` runs: ``name``, or its default.  KeyError (one line,
        naming the valid choices) for an unknown service or one it cannot serve."""
        spec = self.service(name or protocol.default_service)
        if not protocol.serves(spec):
            valid = ", ".join(n for n in self.services.names() if protocol.serves(self.services.get(n)))
            raise KeyError(f"{protocol.name} cannot serve {spec.name!r}; valid: {valid or '(none)'}")
        return spec

    def add(self, spec: ProtocolSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"protocol {spec.name!r} registered twice")
        self._specs[spec.name] = spec

    def get(self, name: str) -> ProtocolSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"unknown protocol {name!r}; valid: {', '.join(sorted(self._specs))}") from None

    def names(self) -> list[str]:
        return sorted(self._specs)
