"""What a node says about itself, and the optional things it can do: typed capabilities.

Every protocol answers ``node_status()`` with one small ``NodeStatus``; anything more is
an optional capability, a ``typing.Protocol`` a node implements or not.  The simulator's
nemesis, the server's metrics, ``/v1/status``, its admin routes and the CLI ask for a
capability (``isinstance(node, HasLeader)``) instead of reading a protocol's fields, so
a protocol without a leader (Basic Paxos, gossip) or without a log runs everywhere,
and a caller that needs a capability the node lacks says which one is missing.

Rules this module owns:
  * ``NodeStatus``: id, role, the leader it knows (None when it knows none, or the
    protocol has none), the protocol's generation number under its own name (Raft's
    ``term``, Multi-Paxos's ballot ``round``, ZAB's ``epoch``, PBFT's ``view``) and a
    ``details`` dict of whatever else the protocol wants to show (JSON-able values);
  * ``details["peers"]``, when present, is reserved for per-peer replication progress,
    ``{peer id: {"match": int, "next": int, "state": str, ...}}`` (``/v1/status`` merges
    it into its peer table, metrics read ``match``); ``peer_progress`` is the one reader,
    and it ignores any other shape rather than fail a status request;
  * a role named ``LEADER`` ("leader") is reserved for a node that implements
    ``HasLeader`` and says ``is_leader()``; the server's runtime fails the writes a
    node was handed when it stops being leader;
  * a capability is a small interface, never a status field: ``HasLeader``,
    ``ReplicatedLog``, ``MembershipChange``, ``LeaderTransfer``, ``LeaseReads``;
    ``capabilities(node)`` names the ones a node has (``CAPABILITIES`` order), and
    ``leader_of`` is the one leader lookup every caller uses;
  * ``implements(node, capability)`` is ``isinstance`` with a memo: a class whose own
    methods implement a capability is trusted for all its instances (``isinstance`` against
    a runtime-checkable Protocol walks its members every time, ~50x an ordinary one, and
    the simulator's nemesis asks who leads hundreds of times per simulated second);
    a negative answer is never memoised, so it stays exactly ``isinstance``'s;
  * capability methods are read-only inspection, except ``propose_config_change`` and
    ``transfer_leadership``, admin inputs that return an error text or None;
  * ``FixedVoters`` is a fact for fault budgets, not a capability a status lists: the
    node's voters are fixed at start and may be fewer than the nodes (ZAB's observers),
    so the simulator's nemesis keeps its faults within what the voters tolerate.

Imports nothing above core/.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

LEADER = "leader"

HAS_LEADER = "has-leader"
REPLICATED_LOG = "replicated-log"
MEMBERSHIP_CHANGE = "membership-change"
LEADER_TRANSFER = "leader-transfer"
LEASE_READS = "lease-reads"
CAPABILITIES = (HAS_LEADER, REPLICATED_LOG, MEMBERSHIP_CHANGE, LEADER_TRANSFER, LEASE_READS)

# The membership changes a server may ask for; a node lists the ones it accepts.
CONFIG_CHANGES = ("add-voter", "add-learner", "remove")


def peer_progress(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``details["peers"]`` as per-peer progress (see the module rules): entries that are
    not ``{str: dict}`` are left out, and any other shape reads as no progress."""
    peers = details.get("peers")
    if not isinstance(peers, dict):
        return {}
    return {str(peer): dict(entry) for peer, entry in peers.items() if isinstance(entry, dict)}


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    """What every node says about itself."""

    id: str
    role: str
    leader: str | None
    generation_name: str  # "term", "round", "epoch", "view", ...
    generation: int  # Invariant: never decreases while the node runs
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``details`` first, so the common fields win a name clash."""
        return {
            **self.details,
            "id": self.id,
            "role": self.role,
            "leader": self.leader,
            "generation_name": self.generation_name,
            "generation": self.generation,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class LogPosition:
    """Where a replicated log stands on one node.

    Invariant: snapshot_index <= applied <= commit and applied <= last_index.
    (``commit`` may run ahead of ``last_index`` on a follower told of a commit it has
    not received yet only where the protocol allows it; Raft and Multi-Paxos do not.)
    """

    commit: int  # highest index known chosen/committed
    applied: int  # highest index applied to the state machine
    last_index: int  # highest index this node holds (voted on, appended)
    snapshot_index: int = 0  # last index covered by the snapshot (0: none)

    def to_dict(self) -> dict[str, int]:
        return {
            "commit": self.commit,
            "applied": self.applied,
            "last_index": self.last_index,
            "snapshot_index": self.snapshot_index,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    """The configuration a node knows."""

    voters: tuple[str, ...]
    learners: tuple[str, ...] = ()
    config_index: int = 0  # index (slot) of the newest configuration entry; 0: initial
    config_pending: bool = False  # a change is proposed and not yet in force

    def to_dict(self) -> dict[str, Any]:
        return {
            "voters": list(self.voters),
            "learners": list(self.learners),
            "config_index": self.config_index,
            "config_pending": self.config_pending,
        }


@runtime_checkable
class Inspectable(Protocol):
    """Every node the platform serves: ``node_status()``."""

    def node_status(self) -> NodeStatus: ...


@runtime_checkable
class HasLeader(Protocol):
    """A protocol with a distinguished leader (Raft, Multi-Paxos, ZAB, PBFT's primary)."""

    def is_leader(self) -> bool: ...

    def current_leader(self) -> str | None:
        """The leader this node knows of (itself included), or None."""
        ...


@runtime_checkable
class ReplicatedLog(Protocol):
    """A replicated log of commands applied in order."""

    def log_position(self) -> LogPosition: ...


@runtime_checkable
class MembershipChange(Protocol):
    """Voters (and learners) change through the protocol itself."""

    # The changes of CONFIG_CHANGES this node accepts.
    config_changes: tuple[str, ...]

    def membership(self) -> Membership: ...

    def propose_config_change(self, change: str, node: str) -> str | None:
        """Start ``change`` of ``node``; an error text (e.g. NOT_LEADER) or None."""
        ...


@runtime_checkable
class FixedVoters(Protocol):
    """The voters, fixed at start: the nodes that are not observers."""

    voters: tuple[str, ...]


@runtime_checkable
class LeaderTransfer(Protocol):
    """The leader can hand leadership to a chosen node."""

    def transfer_leadership(self, target: str) -> str | None:
        """Start the hand-over; an error text (e.g. NOT_LEADER) or None."""
        ...


@runtime_checkable
class LeaseReads(Protocol):
    """The leader may answer reads from local state under a time-bounded lease."""

    def lease_remaining(self) -> float:
        """Seconds this node's leader lease still runs by its own clock (0: none)."""
        ...


# Per capability, the classes found to implement it (see ``implements``).
_IMPLEMENTERS: dict[type, set[type]] = {}


def implements(node: Any, capability: type) -> bool:
    """``isinstance(node, capability)``, memoised per class for positive answers."""
    known = _IMPLEMENTERS.get(capability)
    if known is not None and type(node) in known:
        return True
    if not isinstance(node, capability):
        return False
    # Memoised only when the class itself has the methods (not one instance's own
    # attributes); a capability with data members cannot answer issubclass.
    try:
        if issubclass(type(node), capability):
            _IMPLEMENTERS.setdefault(capability, set()).add(type(node))
    except TypeError:
        pass
    return True


_CHECKS: tuple[tuple[str, type], ...] = (
    (HAS_LEADER, HasLeader),
    (REPLICATED_LOG, ReplicatedLog),
    (MEMBERSHIP_CHANGE, MembershipChange),
    (LEADER_TRANSFER, LeaderTransfer),
    (LEASE_READS, LeaseReads),
)


def capabilities(node: Any) -> tuple[str, ...]:
    """The capabilities ``node`` implements, in ``CAPABILITIES`` order."""
    return tuple(name for name, proto in _CHECKS if implements(node, proto))


def node_status(node: Any) -> NodeStatus:
    """``node.node_status()``; a TypeError naming the gap for a node without it."""
    if not implements(node, Inspectable):
        raise TypeError(f"{type(node).__name__} has no node_status() (core/capabilities.py)")
    return node.node_status()


def is_leading(node: Any) -> bool:
    """The node leads: it has a leader at all, and it is that leader."""
    return implements(node, HasLeader) and node.is_leader()


def leader_of(nodes: Iterable[tuple[str, Any]]) -> list[str]:
    """The ids of the nodes (``(id, node or None)`` pairs) that say they lead, in the
    order given; empty for a protocol without a leader.  The one leader lookup."""
    # is_leading inlined (the simulator's nemesis polls this every 2 ms of a strike).
    known = _IMPLEMENTERS.get(HasLeader, ())
    return [
        node_id
        for node_id, node in nodes
        if node is not None and (type(node) in known or implements(node, HasLeader)) and node.is_leader()
    ]


def supported_changes(node: Any) -> tuple[str, ...]:
    """The membership changes ``node`` accepts (none without ``MembershipChange``)."""
    if not implements(node, MembershipChange):
        return ()
    return tuple(c for c in node.config_changes if c in CONFIG_CHANGES)


def status_dict(node: Any) -> dict[str, Any]:
    """The node's status as one JSON-able dict: the common status, ``capabilities``, and
    each capability's fields (log position, membership, ``lease_remaining``)."""
    status = node_status(node).to_dict()
    caps = capabilities(node)
    status["capabilities"] = list(caps)
    if REPLICATED_LOG in caps:
        status.update(node.log_position().to_dict())
    if MEMBERSHIP_CHANGE in caps:
        status.update(node.membership().to_dict())
    if LEASE_READS in caps:
        status["lease_remaining"] = node.lease_remaining()
    return status
