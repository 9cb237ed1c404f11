"""When a log protocol snapshots its state machine, so that a snapshot's cost per log
entry stays constant however large the state grows.

Rules this module owns:
  * no snapshot when ``threshold`` <= 0 (snapshots disabled) or fewer than
    ``threshold`` applied entries sit in the log after the last one;
  * a state larger than ``AMORTIZE_FLOOR`` keys (``len(state machine)``, what a
    snapshot copies) also waits for as many applied entries as it has keys, at most
    ``AMORTIZE_CAP`` (which bounds the log): a snapshot copies, encodes and writes the
    whole state, so taking one every ``threshold`` entries would cost each entry a share
    proportional to the state's size (a 1,000-key kv store every 200 puts: five copies of
    the state per 1,000 puts instead of one).
"""

from __future__ import annotations

from typing import Final

# States above FLOOR keys wait for as many entries as keys between snapshots, at most
# CAP; smaller ones snapshot every ``threshold`` entries.
AMORTIZE_FLOOR: Final = 512
AMORTIZE_CAP: Final = 100_000


def snapshot_due(applied_since: int, threshold: int, keys: int) -> bool:
    """Whether to snapshot now: ``applied_since`` entries were applied after the last
    snapshot; the state holds ``keys`` keys."""
    if threshold <= 0 or applied_since < threshold:
        return False
    return keys <= AMORTIZE_FLOOR or applied_since >= min(keys, AMORTIZE_CAP)
