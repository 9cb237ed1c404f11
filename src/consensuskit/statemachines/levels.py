"""The cluster level: which rules every replica of a cluster is known to apply alike.

A release may change how a service applies a command (etcd's txns checked in etcd's
order, PR "precheck"): a command made for the new rule must not reach a replica that
still runs the previous release, or the replicas' states diverge with no error anywhere.
etcd solves this with a *cluster version*: every member publishes its server version,
the cluster's is the lowest of them, raised through the log, and a feature is used only
once the cluster's version has it (a member of a lower version is then refused).  Here
the same idea, as one integer for the whole package:

Rules this module owns:
  * ``RELEASE_LEVEL`` is the level this release applies; ``BASE_LEVEL`` (1) is every
    release before levels existed.  Each level's new rules are listed in ``FEATURES``;
    a level only ever adds rules (a command made for a lower level applies the same on
    every release that knows it);
  * the cluster's level lives in the replicated state, beside the peer directory
    (statemachines/peers.py): ``level_op(n)`` is a command every log service's state
    machine answers (statemachines/backup.py dispatches it), applied on every replica
    alike: the level becomes the larger of the two (it never falls); a malformed one (not
    an int, below BASE_LEVEL, above RELEASE_LEVEL: a level this release cannot apply) is
    refused ``bad-command`` and changes nothing.  A replica of a release before levels
    refuses the kind as ``bad-command`` too, alike on every such replica;
  * the level is a state machine's ``cluster_level`` and goes into its snapshot under
    "level" once above BASE_LEVEL; a snapshot without it (every earlier release's)
    restores BASE_LEVEL.  It belongs to the cluster, not to the service's data: a
    backup leaves it out and a restore keeps the restoring cluster's;
  * an edge makes a command for a level's rules only when the level it has applied has
    them (``level_of``): such a command is ordered after the raise, so every replica
    that applies it has applied the raise, and the server raised it only when every
    member ran a release of that level (server/cluster_level.py).
"""

from __future__ import annotations

from typing import Any

from consensuskit.core.client import ServiceOp

BASE_LEVEL = 1
RELEASE_LEVEL = 2
FEATURES = {
    1: "every release before cluster levels",
    2: "etcd txns checked in etcd's order (precheck) and etcd's permission on a range "
    "that ends at or before its key (empty_ranges)",
}
ETCD_CHECKS = 2  # the level of etcd's precheck and empty_ranges (services/etcd.py)
LEVEL = "level"
SNAPSHOT_KEY = "level"


def level_op(level: int) -> ServiceOp:
    """The command that raises the cluster's level to ``level`` (see the module rules)."""
    return ServiceOp(kind=LEVEL, value=level)


def valid_level(level: Any) -> bool:
    return type(level) is int and BASE_LEVEL <= level <= RELEASE_LEVEL


def applied(current: int, op: ServiceOp) -> int | None:
    """The level after ``op``, or None when ``op`` is malformed (refused)."""
    if op.key or not valid_level(op.value):
        return None
    return max(current, op.value)


def snapshot_part(level: int) -> dict[str, int]:
    """What a snapshot carries for ``level``: nothing at BASE_LEVEL (as every earlier one)."""
    return {SNAPSHOT_KEY: level} if level > BASE_LEVEL else {}


def restored(part: Any) -> int:
    """A snapshot's "level" part (None: absent) as a level; ValueError when malformed."""
    if part is None:
        return BASE_LEVEL
    if not valid_level(part):
        raise ValueError(
            f"'level' must be an integer {BASE_LEVEL}..{RELEASE_LEVEL}, not {part!r} "
            "(a snapshot of a newer release?)"
        )
    return int(part)


def level_of(node: Any) -> int | None:
    """The level a protocol node's state machine has applied (None: it keeps none)."""
    return getattr(getattr(node, "sm", None), "cluster_level", None)
