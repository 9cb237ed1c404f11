"""Checkers: per-protocol invariants run on every simulation step, and history checks."""

from __future__ import annotations


class InvariantViolation(Exception):
    """A safety property failed.  ``name`` is the property, ``detail`` the evidence."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = detail
        self.time: float | None = None
        self.trace_tail: list[dict] = []


__all__ = ["InvariantViolation"]
