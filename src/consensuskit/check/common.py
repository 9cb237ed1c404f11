"""What every replicated-log checker judges the same way, whatever the protocol calls a
position in its log (Raft's index, ZAB's position, a Paxos slot).

* read freshness - a read reflects every position committed (or executed) anywhere before
                   it was invoked: a necessary condition of linearizability that the
                   simulator's global knowledge can check at once.  The checker records
                   the growth of that prefix as two parallel lists (time, position),
                   appended on its hot path; the check reads them only per read.
* acknowledged   - a write answered ok is committed, with that very command, at the
  writes           position the answer names (Raft, ZAB: one command per position);
* convergence    - after the settle period (every fault repaired), the members reached
                   the same position and hold the same state.
"""

from __future__ import annotations

import bisect
from typing import Any

from consensuskit.check import InvariantViolation
from consensuskit.core.client import ClientRequest, ClientResponse


def check_read_fresh(
    times: list[float],
    positions: list[int],
    invoke_time: float,
    request: ClientRequest,
    response: ClientResponse,
    *,
    unit: str,
    reached: str,
) -> None:
    """``positions[i]`` was the highest position ``reached`` anywhere from ``times[i]`` on;
    raise read-freshness if the read was served from below the one at ``invoke_time``."""
    i = bisect.bisect_right(times, invoke_time) - 1
    required = positions[i] if i >= 0 else 0
    if response.index < required:
        raise InvariantViolation(
            "read-freshness",
            f"{request.client_id}#{request.seq} {request.op.describe()} invoked at "
            f"{invoke_time:.6f}, when {unit} {required} was already {reached}, was "
            f"served from {unit} {response.index}: result {response.result!r} is stale",
        )


def check_acknowledged_write(
    committed: Any,
    request: ClientRequest,
    response: ClientResponse,
    *,
    unit: str,
    found: str = "which is not committed with that command",
) -> None:
    """``committed``: the command committed at ``response.index`` (None: nothing known
    committed there).  It must be ``request`` itself (same client and sequence number);
    ``found`` says what stands there instead, for the evidence."""
    if not isinstance(committed, ClientRequest) or (committed.client_id, committed.seq) != (
        request.client_id,
        request.seq,
    ):
        raise InvariantViolation(
            "acknowledged-write",
            f"{request.client_id}#{request.seq} {request.op.describe()} answered ok at "
            f"{unit} {response.index}, {found}",
        )


def check_converged(states: dict[str, tuple[int, Any]], *, what: str) -> None:
    """``states``: member -> (its position, its state's digest), after the settle period.
    ``what`` names the position ("applied index"), for the evidence."""
    positions = {node_id: position for node_id, (position, _) in states.items()}
    if len(set(positions.values())) > 1:
        raise InvariantViolation(
            "convergence", f"after the settle period the members' {what} differs: {positions}"
        )
    if len({digest for _, digest in states.values()}) > 1:
        raise InvariantViolation("convergence", f"the same {what} but different states")
