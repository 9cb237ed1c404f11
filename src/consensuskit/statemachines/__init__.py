"""Replicated state machines any log-based protocol can drive."""

from consensuskit.statemachines.base import StateMachine

__all__ = ["StateMachine"]
