"""consensuskit: consensus protocols as deterministic sans-I/O state machines.

Layers (imports point downward only): cli -> sim / server -> check -> statemachines ->
protocols -> core.  See docs/architecture.md.
"""

__version__ = "0.1.0"
