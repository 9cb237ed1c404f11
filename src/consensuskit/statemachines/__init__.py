"""Replicated state machines any log-based protocol can drive."""

from consensuskit.statemachines.base import StateMachine

__all__ = ["StateMachine", "default_state_machine"]


def default_state_machine() -> StateMachine:
    """The kv state machine: what a log protocol's node replicates when it is built
    without a service (tests build nodes directly; the simulator and the server always
    pass the service's)."""
    from consensuskit.statemachines.kv import KVStateMachine  # here: kv imports this package

    return KVStateMachine()
