"""The atomic-commit family: 2PC, 3PC and Paxos Commit (protocols/commit/README.md).

Specs are built here; the nodes live in ``node.py`` (2PC, 3PC: the transition tables of
``tables.py``) and ``paxos_commit.py``.  Public surface for checkers and services: the
record kinds of the write-ahead log, ``validate_txn`` and ``coordinator_of``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensuskit.core.registry import ProtocolSpec

# The log records (kind first) a checker may look for in a node's durable storage.
PREPARED_RECORD = "prepared"  # a participant's yes vote: ("prepared", txn, ...)
DECIDED_RECORD = "decided"  # a 2PC/3PC coordinator's commit: ("decided", txn, succeeded, ...)
ACCEPTED_RECORD = "accepted"  # a Paxos Commit acceptor's vote: ("accepted", txn, rm, ballot, value)
PROMISED_RECORD = "promised"  # a Paxos Commit acceptor's promise: ("promised", txn, ballot)
COMMITTED_RECORD = "committed"  # a participant's commit: ("committed", txn, succeeded)


def validate_txn(value: Any) -> None:
    """ValueError (one line) unless ``value`` is a transaction (txn.py's shape)."""
    from consensuskit.protocols.commit.txn import validate

    validate(value)


def owner(key: str, participants: Sequence[str]) -> str:
    """The participant owning ``key`` (txn.py: hash ranges)."""
    from consensuskit.protocols.commit.txn import owner as owner_of

    return owner_of(key, participants)


def coordinator_of(txn: str) -> str:
    """The node that started ``txn``: its id is COORDINATOR.INCARNATION.N."""
    return txn.rsplit(".", 2)[0]


def _validator(protocol: str, bugs: tuple[str, ...]) -> Any:
    def validate_options(options: dict[str, Any]) -> None:
        from consensuskit.protocols.commit.options import CommitOptions

        CommitOptions.from_dict(options, protocol, bugs)

    return validate_options


def two_pc_spec() -> ProtocolSpec:
    from consensuskit.protocols.commit.node import CommitNode
    from consensuskit.protocols.commit.options import BUGS_2PC

    def make(node_id: str, env: Any, members: Any, options: dict[str, Any]) -> CommitNode:
        return CommitNode(node_id, env, members, options, three_phase=False, protocol="2pc", bugs=BUGS_2PC)

    return ProtocolSpec(
        name="2pc",
        description="two-phase commit with presumed abort, cooperative termination and blocking shown",
        make_node=make,
        bugs=BUGS_2PC,
        validate_options=_validator("2pc", BUGS_2PC),
        services=("txn",),
        min_nodes=2,
    )


def three_pc_spec() -> ProtocolSpec:
    from consensuskit.protocols.commit.node import CommitNode
    from consensuskit.protocols.commit.options import BUGS_3PC

    def make(node_id: str, env: Any, members: Any, options: dict[str, Any]) -> CommitNode:
        return CommitNode(node_id, env, members, options, three_phase=True, protocol="3pc", bugs=BUGS_3PC)

    return ProtocolSpec(
        name="3pc",
        description="three-phase commit: pre-commit and the termination protocol (splits under partitions)",
        make_node=make,
        bugs=BUGS_3PC,
        validate_options=_validator("3pc", BUGS_3PC),
        services=("txn",),
        min_nodes=2,
    )


def paxos_commit_spec() -> ProtocolSpec:
    from consensuskit.protocols.commit.options import BUGS_PAXOS_COMMIT
    from consensuskit.protocols.commit.paxos_commit import PaxosCommitNode

    return ProtocolSpec(
        name="paxos-commit",
        description="Paxos Commit (Gray and Lamport): each participant's vote decided by 2F+1 acceptors",
        make_node=PaxosCommitNode,
        bugs=BUGS_PAXOS_COMMIT,
        validate_options=_validator("paxos-commit", BUGS_PAXOS_COMMIT),
        services=("txn",),
        min_nodes=3,
    )


__all__ = [
    "ACCEPTED_RECORD",
    "COMMITTED_RECORD",
    "DECIDED_RECORD",
    "PREPARED_RECORD",
    "PROMISED_RECORD",
    "coordinator_of",
    "owner",
    "paxos_commit_spec",
    "three_pc_spec",
    "two_pc_spec",
    "validate_txn",
]
