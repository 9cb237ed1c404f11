"""The interface between a log-based protocol and the state machine it replicates.

It lives in ``core/service.py`` (protocols import only core); this module keeps the old
import path.
"""

from __future__ import annotations

from consensuskit.core.service import StateMachine

__all__ = ["StateMachine"]
