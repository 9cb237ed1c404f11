"""The membership service: who is in the group, as one member sees it (SWIM's clients).

Rules this module owns:
  * operations: ``members`` (the member's whole table: a list of ``{"id", "address",
    "state", "incarnation"}`` sorted by id) and ``member KEY`` (one entry); both are
    reads, served by the member from its own view (no log, no agreement: views differ
    while updates spread, by design);
  * no linearizability verdict is due (``model=None``): membership is weakly consistent;
    the properties that matter (completeness, accuracy, the dissemination bound) are
    checked by check/swim.py and check/swim_monitor.py instead;
  * HTTP: ``GET /v1/members`` and ``GET /v1/members/ID`` (services/membership_http.py);
  * the state machine is a plain table (``MembershipTable``) of those entries, for a
    runtime that wants a member's view as a snapshot; the SWIM member answers from its
    own records and keeps none.
"""

from __future__ import annotations

import random
from typing import Any

from consensuskit.core.service import ServiceSpec

KINDS = ("members", "member")
READS = KINDS


class MembershipTable:
    """A snapshot of one member's view: id -> (address, state, incarnation)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str, int]] = {}

    def apply(self, command: Any) -> Any:
        raise ValueError("the membership service has no write operations")

    def read(self, request: Any) -> Any:
        op = request.op
        if op.kind == "members":
            return [self._entry(m) for m in sorted(self.entries)]
        if op.key in self.entries:
            return self._entry(op.key)
        return None

    def _entry(self, member: str) -> dict[str, Any]:
        address, state, incarnation = self.entries[member]
        return {"id": member, "address": address, "state": state, "incarnation": incarnation}

    def snapshot(self) -> Any:
        return tuple((m, *self.entries[m]) for m in sorted(self.entries))

    def restore(self, snapshot: Any) -> None:
        self.entries = {str(m): (str(a), str(s), int(i)) for m, a, s, i in snapshot}

    def digest(self) -> Any:
        return self.snapshot()

    def __len__(self) -> int:
        return len(self.entries)


class MembershipWorkload:
    """A client asking random members for their view (mostly the whole table)."""

    def __init__(self, index: int, keys: int) -> None:
        self.index = index

    def next_op(self, rng: random.Random) -> Any:
        if rng.random() < 0.8:
            return SERVICE.op("members")
        return SERVICE.op("member", f"n{rng.randint(1, 3)}")

    def learn(self, op: Any, result: Any) -> None:
        pass


def _validate(op: Any) -> None:
    if op.kind == "member" and not op.key:
        raise ValueError("member needs the member's id as its key")


SERVICE = ServiceSpec(
    name="membership",
    description="group membership as one member sees it: members, member ID",
    kinds=KINDS,
    read_kinds=READS,
    make_state_machine=MembershipTable,
    make_workload=MembershipWorkload,
    validate=_validate,
    model=None,
    log=False,
    http="consensuskit.services.membership_http:ROUTES",
    example="curl {url}/v1/members",
)


def membership_service() -> ServiceSpec:
    return SERVICE
