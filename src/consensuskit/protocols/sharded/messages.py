"""Messages between hosts of sharded Raft.

Tags 250-259 belong to Sharded Raft; append new ones, never reuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensuskit.core.messages import message


@message(250)
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMessage:
    """A Raft message of group ``group`` between that group's replicas on two hosts."""

    group: int
    msg: Any

    def summary(self) -> str:
        inner = getattr(self.msg, "summary", None)
        return f"g{self.group} {inner() if inner is not None else type(self.msg).__name__}"
