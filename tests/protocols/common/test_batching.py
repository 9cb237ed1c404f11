"""Batches bounded by count and estimated bytes (protocols/common/batching.py),
against a naive twin."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.common.batching import ENTRY_OVERHEAD, EntrySizes, batch_length, entry_size


def naive_batch(sizes: list[int], max_items: int, max_bytes: int) -> tuple[int, int]:
    best = 0
    for n in range(1, min(len(sizes), max_items) + 1):
        if n == 1 or sum(sizes[:n]) <= max_bytes:
            best = n
        else:
            break
    return best, sum(sizes[:best])


@given(
    st.lists(st.integers(min_value=0, max_value=5_000), max_size=30),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=0, max_value=20_000),
)
def test_batch_length_matches_its_naive_twin(sizes, max_items, max_bytes):
    assert batch_length(sizes, max_items, max_bytes) == naive_batch(sizes, max_items, max_bytes)
    cache = EntrySizes(lambda size: size)
    assert cache.take(sizes[:max_items], 1, max_bytes) == naive_batch(sizes, max_items, max_bytes)


def test_the_first_item_goes_whatever_its_size():
    assert batch_length([10_000, 1], 64, 100) == (1, 10_000)
    assert batch_length([], 64, 100) == (0, 0)


def test_an_entrys_size_counts_its_command_value():
    request = ClientRequest(client_id="c", seq=1, op=Op(kind="put", key="k", value="x" * 50_000))
    assert entry_size(None) == ENTRY_OVERHEAD
    assert 50_000 + ENTRY_OVERHEAD < entry_size(request) < 50_000 + ENTRY_OVERHEAD + 100


def recording_cache() -> tuple[EntrySizes, list[int]]:
    """A cache of entries that are their own size, and the list of what it measured."""
    measured: list[int] = []

    def measure(entry: int) -> int:
        measured.append(entry)
        return entry

    return EntrySizes(measure), measured


def test_sizes_are_measured_once_and_dropped_with_their_index():
    cache, measured = recording_cache()
    assert cache.take([5, 6, 7], 10, 100) == (3, 18)
    assert cache.take([5, 6, 7], 10, 100) == (3, 18)
    assert measured == [5, 6, 7]  # the second peer's batch reused them
    cache.drop_from(12)  # index 12 truncated: its replacement is measured again
    assert cache.take([5, 6, 70], 10, 100) == (3, 81)
    assert measured == [5, 6, 7, 70]
    cache.drop_through(10)
    assert list(cache.cached()) == [11, 12]
    cache.clear()
    assert list(cache.cached()) == []


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.lists(st.integers(min_value=0, max_value=500), max_size=8)),
            st.tuples(st.sampled_from(["truncate", "compact"]), st.integers(min_value=0, max_value=1_000)),
            st.tuples(st.just("take"), st.integers(min_value=0, max_value=1_000), st.integers(0, 2_000)),
        ),
        max_size=60,
    )
)
def test_cached_sizes_always_match_the_log_they_cache(steps):
    """A log of entries whose size is their value, truncated (and rewritten with other
    sizes), compacted and read from anywhere: every batch the cache measures is the one
    the log's current entries make."""
    log: dict[int, int] = {}  # index -> entry (= its size)
    first, last = 1, 0
    cache = EntrySizes(lambda entry: entry)
    for step in steps:
        if step[0] == "append":
            for entry in step[1]:
                last += 1
                log[last] = entry
            continue
        if last < first:
            continue
        index = first + step[1] % (last - first + 1)  # an index the log holds
        if step[0] == "truncate":
            for i in range(index, last + 1):
                del log[i]
            last = index - 1
            cache.drop_from(index)
        elif step[0] == "compact":
            for i in range(first, index + 1):
                del log[i]
            first = index + 1
            cache.drop_through(index)
        else:
            entries = [log[i] for i in range(index, last + 1)]
            assert cache.take(entries, index, step[2]) == naive_batch(entries, len(entries), step[2])
        assert all(i in log for i in cache.cached())  # nothing cached outside the log


def test_a_compaction_keeps_the_sizes_after_it():
    cache, measured = recording_cache()
    cache.take(list(range(1, 101)), 1, 10**9)
    cache.drop_through(90)
    assert list(cache.cached()) == list(range(91, 101))
    measured.clear()
    assert cache.take(list(range(91, 101)), 91, 10**9) == (10, sum(range(91, 101)))
    assert measured == []  # still cached after the compaction
    assert cache.take([7, 8], 5, 10**9) == (2, 15)  # below the run: measured, not cached
    assert measured == [7, 8] and list(cache.cached()) == list(range(91, 101))
