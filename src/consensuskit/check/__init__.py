"""Checkers: per-protocol invariants run on every simulation step, and history checks."""

from __future__ import annotations

from typing import Any


class InvariantViolation(Exception):
    """A safety property failed.  ``name`` is the property, ``detail`` the evidence.

    The simulator attaches ``time`` (virtual seconds) and ``trace_tail`` (the last trace
    records, as dicts) before the exception leaves it, so a CLI can print the trace
    around the violation.
    """

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name
        self.detail = detail
        self.time: float | None = None
        self.trace_tail: list[dict[str, Any]] = []

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "detail": self.detail, "time": self.time}


__all__ = ["InvariantViolation"]
