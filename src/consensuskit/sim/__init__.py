"""Deterministic fault-injecting simulator.

One event queue ordered by (virtual time, sequence number), one seed from which every
random choice is derived: same seed and config => same trace, byte for byte.
"""

from consensuskit.sim.config import (
    ALL_NEMESIS,
    DEFAULT_LINEARIZABILITY_TIMEOUT,
    NEMESIS_KINDS,
    RUNTIMES,
    NetworkConfig,
    SimConfig,
)
from consensuskit.sim.errors import InvariantViolation, WallClockExceeded
from consensuskit.sim.history import History, OpRecord
from consensuskit.sim.nemesis import Nemesis, Schedule
from consensuskit.sim.simulation import SimResult, Simulation
from consensuskit.sim.workload import OpRun

__all__ = [
    "ALL_NEMESIS",
    "DEFAULT_LINEARIZABILITY_TIMEOUT",
    "NEMESIS_KINDS",
    "RUNTIMES",
    "History",
    "InvariantViolation",
    "Nemesis",
    "NetworkConfig",
    "OpRecord",
    "OpRun",
    "Schedule",
    "SimConfig",
    "SimResult",
    "Simulation",
    "WallClockExceeded",
]
