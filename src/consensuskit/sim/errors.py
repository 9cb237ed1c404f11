"""The exception a checker raises when a safety property breaks (defined in check/,
re-exported here for the simulator's users)."""

from consensuskit.check import InvariantViolation

__all__ = ["InvariantViolation"]
