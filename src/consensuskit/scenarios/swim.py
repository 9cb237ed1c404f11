"""SWIM scenarios."""

SCENARIOS: list = []
