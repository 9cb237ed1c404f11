"""What every fuzz test against live nodes shares: hypothesis settings for a fixed,
repeatable number of examples (derandomized, no database, no deadline: a live cluster's
answers take what they take, and a failure must reproduce from the test alone)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def live_fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
