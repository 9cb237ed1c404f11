"""server/gc_watch.py: the collector's pauses, timed per generation and exported."""

from __future__ import annotations

import gc

from consensuskit.server import gc_watch
from consensuskit.server.metrics import _gc_metrics


def test_a_full_collection_is_counted_and_timed():
    stats = gc_watch.install()
    assert gc_watch.install() is stats  # idempotent: one hook per process
    before = stats.collections[2]
    gc.collect()
    assert stats.collections[2] == before + 1
    assert stats.seconds[2] > 0 and stats.max_seconds[2] > 0
    families = {f.name: f for f in _gc_metrics(stats)}
    assert families["consensuskit_gc_collections"].samples[2].value == stats.collections[2]


def test_nothing_is_exported_without_the_hook():
    assert list(_gc_metrics(None)) == []


def test_what_lives_at_startup_leaves_the_full_collections():
    try:
        frozen = gc_watch.freeze_startup()
        assert frozen > 1000  # at least the imports
        assert gc.get_freeze_count() == frozen
        assert not any(o is test_what_lives_at_startup_leaves_the_full_collections for o in gc.get_objects(2))
    finally:
        gc.unfreeze()  # other tests of this process expect a normal collector


def test_raise_young_threshold_keeps_the_older_thresholds_and_a_disabled_collector():
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        gc_watch.raise_young_threshold()
        assert gc.get_threshold() == (gc_watch.YOUNG_THRESHOLD, 10, 10)
        gc.set_threshold(0, 10, 10)  # the collector off: stays off
        gc_watch.raise_young_threshold()
        assert gc.get_threshold() == (0, 10, 10)
    finally:
        gc.set_threshold(*saved)
