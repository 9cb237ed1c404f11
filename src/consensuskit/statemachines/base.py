"""The interface between a log-based protocol and the state machine it replicates."""

from __future__ import annotations

from typing import Any, Protocol

from consensuskit.core.client import ClientRequest


class StateMachine(Protocol):
    """Applied in log order, identically on every replica.

    ``apply`` must be deterministic: same sequence of commands -> same results and state.
    ``snapshot`` returns an immutable, codec-encodable value; ``restore`` replaces the
    whole state with one.
    """

    def apply(self, command: ClientRequest) -> Any: ...

    def read(self, request: ClientRequest) -> Any:
        """Serve a read-only command from the current state without logging it."""
        ...

    def snapshot(self) -> Any: ...

    def restore(self, snapshot: Any) -> None: ...

    def digest(self) -> Any:
        """A comparable summary of the whole state (for convergence checks)."""
        ...
