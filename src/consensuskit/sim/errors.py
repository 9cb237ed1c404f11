"""The exceptions a run can end with: ``InvariantViolation``, which a checker raises when
a safety property breaks (defined in check/, re-exported here for the simulator's users),
and ``WallClockExceeded``, a run stopped by its wall-clock limit."""

from consensuskit.check import InvariantViolation

__all__ = ["InvariantViolation", "WallClockExceeded"]


class WallClockExceeded(BaseException):
    """``Simulation.run(wall_limit=S)`` ran S seconds of wall time without ending: a
    livelock, or a run far slower than meant.  A BaseException, so that nothing that
    catches a protocol's exceptions (``except Exception``) mistakes it for one."""
