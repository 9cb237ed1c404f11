"""The Byzantine generals (Lamport, Shostak, Pease 1982): OM(m) and SM(m).

``rounds.run_generals`` runs either algorithm as a direct, deterministic round-based
function; ``votes`` builds seed 004's vote (naive majority vs interactive consistency);
``node`` runs the same generals as protocol nodes in the simulator.  IC1/IC2 live in
``consensuskit.check.byzantine``.
"""

from __future__ import annotations

from consensuskit.protocols.byzantine.oral import OralGeneral, message_count
from consensuskit.protocols.byzantine.orders import ATTACK, DEFAULT, ORDERS, RETREAT
from consensuskit.protocols.byzantine.rounds import MODES, GeneralsRun, general_ids, run_generals
from consensuskit.protocols.byzantine.signed import SignedGeneral
from consensuskit.protocols.byzantine.strategies import STRATEGIES

__all__ = [
    "ATTACK",
    "DEFAULT",
    "MODES",
    "ORDERS",
    "RETREAT",
    "STRATEGIES",
    "GeneralsRun",
    "OralGeneral",
    "SignedGeneral",
    "general_ids",
    "message_count",
    "run_generals",
]
