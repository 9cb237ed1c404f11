"""The Byzantine generals (Lamport, Shostak, Pease 1982): OM(m) and SM(m).

The public surface other packages use (check/, the CLI, the catalog):
``run_generals`` runs either algorithm as a direct, deterministic round-based
function; ``naive_vote``/``interactive_vote`` are seed 004's vote; ``generals_spec``
runs the same generals as protocol nodes in the simulator.  IC1/IC2 live in
``consensuskit.check.byzantine``.
"""

from __future__ import annotations

from consensuskit.protocols.byzantine.options import GeneralsOptions
from consensuskit.protocols.byzantine.options import parse as parse_options
from consensuskit.protocols.byzantine.oral import OralGeneral, message_count
from consensuskit.protocols.byzantine.orders import ATTACK, DEFAULT, ORDERS, RETREAT, majority
from consensuskit.protocols.byzantine.rounds import (
    MAX_MESSAGES,
    MODES,
    GeneralsRun,
    general_ids,
    run_generals,
)
from consensuskit.protocols.byzantine.signed import SignedGeneral
from consensuskit.protocols.byzantine.signing import SCHEMES, make_keys
from consensuskit.protocols.byzantine.spec import generals_spec
from consensuskit.protocols.byzantine.strategies import STRATEGIES
from consensuskit.protocols.byzantine.votes import VoteRun, interactive_vote, naive_vote

__all__ = [
    "ATTACK",
    "DEFAULT",
    "MAX_MESSAGES",
    "MODES",
    "ORDERS",
    "RETREAT",
    "SCHEMES",
    "STRATEGIES",
    "GeneralsOptions",
    "GeneralsRun",
    "OralGeneral",
    "SignedGeneral",
    "VoteRun",
    "general_ids",
    "generals_spec",
    "interactive_vote",
    "majority",
    "make_keys",
    "message_count",
    "naive_vote",
    "parse_options",
    "run_generals",
]
