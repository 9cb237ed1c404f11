"""Gossip: epidemic dissemination (Demers et al., PODC 1987).

The public surface other packages use: the rumor-mongering cycle model (``epidemic``) and
the paper's tables (``demers_tables``).
"""

from consensuskit.protocols.gossip.demers_tables import TABLES, PaperRow
from consensuskit.protocols.gossip.epidemic import (
    FIGURES,
    INTEREST,
    MODES,
    RumorConfig,
    RumorRun,
    Spread,
    measure,
    run_rumor,
    spread,
)

__all__ = [
    "FIGURES",
    "INTEREST",
    "MODES",
    "TABLES",
    "PaperRow",
    "RumorConfig",
    "RumorRun",
    "Spread",
    "measure",
    "run_rumor",
    "spread",
]
