"""PBFT's seed scenarios (SCENARIOS.md): filled in below."""

from __future__ import annotations

SCENARIOS: list = []
