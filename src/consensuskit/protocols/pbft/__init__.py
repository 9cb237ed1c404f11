"""PBFT (Castro & Liskov, OSDI 1999 / TOCS 2002): see README.md here.

``pbft_spec()`` builds the catalog entry.  Each spec owns one ``TokenKeyring`` (the
simulator's unforgeable signatures are checked against it by identity), so every node
built from one spec verifies the others' tokens, and a node built from another spec
cannot.  Replicas named in the ``byzantine`` option run ``byzantine.py``'s strategies
around a correct replica.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from consensuskit.core.env import Env
from consensuskit.core.registry import ProtocolFlag, ProtocolSpec
from consensuskit.core.service import StateMachine
from consensuskit.protocols.pbft.auth import Ed25519Signer, Macs, Signer, TokenKeyring
from consensuskit.protocols.pbft.messages import batch_digest
from consensuskit.protocols.pbft.node import CHECKPOINT_KEY, VIEW_KEY, PbftNode, byzantine_quorum, fault_bound
from consensuskit.protocols.pbft.options import BUGS, STRATEGIES, PbftOptions, parse_byzantine

__all__ = [
    "BUGS",
    "CHECKPOINT_KEY",
    "STRATEGIES",
    "VIEW_KEY",
    "PbftNode",
    "PbftOptions",
    "batch_digest",
    "byzantine_quorum",
    "fault_bound",
    "parse_byzantine",
    "pbft_spec",
    "replica_of",
]


def replica_of(node: Any) -> PbftNode | None:
    """The correct replica inside ``node`` (a Byzantine wrapper's first inner node)."""
    if isinstance(node, PbftNode):
        return node
    inner = getattr(node, "inner", None)
    return inner if isinstance(inner, PbftNode) else None


def make_signer(
    keyring: TokenKeyring, node_id: str, members: Sequence[str], opts: PbftOptions, env: Env
) -> Signer:
    key: bytes | None = getattr(env, "cluster_key", None)  # core/env.py
    node_key, public = _node_keys(env)
    kind = opts.signatures
    if kind == "auto":
        kind = "ed25519" if key is not None or node_key is not None else "token"
    if kind == "ed25519":
        if node_key is not None and public is not None:
            return Ed25519Signer.from_node_keys(node_id, members, node_key, public)
        return Ed25519Signer(node_id, members, key if key is not None else opts.mac_secret.encode())
    return keyring.signer(node_id)


def make_macs(node_id: str, members: Sequence[str], opts: PbftOptions, env: Env) -> Macs:
    """Pairwise keys from the nodes' own key pairs where the runtime gives them, else
    from the cluster key (or, in the simulator, ``mac_secret``)."""
    node_key, public = _node_keys(env)
    if node_key is not None and public is not None:
        return Macs.from_node_keys(node_id, members, node_key, public)
    key: bytes | None = getattr(env, "cluster_key", None)
    return Macs(node_id, members, key if key is not None else opts.mac_secret.encode())


def _node_keys(env: Env) -> tuple[bytes | None, dict[str, dict[str, bytes]] | None]:
    return getattr(env, "node_key", None), getattr(env, "public_keys", None)  # core/env.py


def pbft_spec() -> ProtocolSpec:
    keyring = TokenKeyring()

    def make_node(
        node_id: str,
        env: Env,
        members: Sequence[str],
        options: dict[str, Any],
        *,
        state_machine: StateMachine | None = None,
    ) -> Any:
        opts = PbftOptions.from_dict(options)
        members = tuple(members)
        if opts.read_only and getattr(env, "cluster_key", None) is not None:
            # A server's HTTP front door orders each node's reads under its own id, and
            # its clients do not know the 2f+1 this option needs: simulator only.
            raise ValueError("read_only runs in the simulator only (its clients wait for 2f+1 replies)")

        def replica(env_: Env, sm: StateMachine | None = None) -> PbftNode:
            machine = sm if sm is not None else state_machine
            assert machine is not None, "pbft is a log protocol: it needs state_machine="
            return PbftNode(
                node_id,
                env_,
                members,
                opts,
                state_machine=machine,
                signer=make_signer(keyring, node_id, members, opts, env),
                macs=make_macs(node_id, members, opts, env),
            )

        strategy = opts.faulty().get(node_id)
        if strategy is None:
            return replica(env)
        from consensuskit.protocols.pbft.byzantine import ByzantineNode

        return ByzantineNode(node_id, env, members, opts, strategy, replica)

    return ProtocolSpec(
        name="pbft",
        description="PBFT (Castro & Liskov): n = 3f+1 Byzantine fault tolerance with MACs, batching, "
        "checkpoints, view changes, state transfer and a Byzantine nemesis",
        make_node=make_node,
        bugs=BUGS,
        validate_options=validate_options,
        min_nodes=4,
        log=True,
        flags=(
            ProtocolFlag(
                name="byzantine",
                kind=str,
                default="",
                help="faulty replicas and their strategies, NODE:STRATEGY[,...]; strategies: "
                + ", ".join(STRATEGIES),
            ),
        ),
        # The client trusts an answer once f+1 replicas gave it: one of them is correct.
        reply_quorum=reply_quorum,
    )


def reply_quorum(nodes: int, read: bool, options: Mapping[str, Any]) -> int:
    """Matching replies a client needs: f+1 (one of them is correct, and replicas answer
    only once a request committed).  With the read-only optimisation (``read_only``)
    2f+1 for every request, ceil((n+f+1)/2) when n > 3f+1 (TOCS §5.1.3: reads answered
    without ordering are linearizable only if reads and writes both wait for such a
    quorum: any two share a correct replica).  The bug knob ``read-only-f-plus-1`` keeps the normal case's f+1
    with the optimisation on: then f+1 replicas that have not yet executed a completed
    write outvote it, and a read is stale."""
    f = fault_bound(nodes)
    if not options.get("read_only") or "read-only-f-plus-1" in (options.get("bugs") or ()):
        return f + 1
    return byzantine_quorum(nodes)  # 2f+1 when n = 3f+1


def validate_options(options: dict[str, Any]) -> None:
    PbftOptions.from_dict(options)
