"""The client side of cache leases (client_cache.py)."""

from __future__ import annotations

import pytest

from consensuskit.client_cache import MISS, LeaseCache


def test_an_entry_is_kept_from_when_the_read_was_asked_shortened_by_the_bound():
    cache = LeaseCache(drift_bound=0.05)
    cache.store("x", "one", lease=1.0, asked_at=10.0)
    assert cache.lookup("x", 10.9) == "one"
    assert cache.lookup("x", 10.95) is MISS  # 10 + 1.0 * 0.95: expired, and dropped
    assert len(cache) == 0
    assert (cache.hits, cache.misses) == (1, 1)


def test_no_lease_keeps_nothing_and_an_own_write_forgets():
    cache = LeaseCache()
    cache.store("x", "one", lease=0.0, asked_at=0.0)
    assert cache.lookup("x", 0.0) is MISS
    cache.store("x", "one", lease=5.0, asked_at=0.0)
    cache.forget("x")
    assert cache.lookup("x", 0.1) is MISS


def test_the_entry_expiring_first_makes_room():
    cache = LeaseCache(max_entries=2)
    cache.store("a", 1, lease=1.0, asked_at=0.0)
    cache.store("b", 2, lease=5.0, asked_at=0.0)
    cache.store("c", 3, lease=3.0, asked_at=0.0)
    assert cache.lookup("a", 0.1) is MISS and cache.lookup("b", 0.1) == 2 and cache.lookup("c", 0.1) == 3


@pytest.mark.parametrize("kwargs", [{"drift_bound": 1.0}, {"drift_bound": -0.1}, {"max_entries": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        LeaseCache(**kwargs)


# ---------------------------------------------------------------------- on real nodes
def test_a_caching_client_on_a_real_raft_cluster(tmp_path):
    """Three in-process Raft nodes with ``cache_lease = 1``: the caching client answers a
    second read from its cache, another client's write waits for the lease, and then
    the caching client reads the new value."""
    import asyncio
    import time

    from consensuskit.client import AsyncClient
    from tests.server.runtime_harness import FAST_RAFT, Cluster, async_test

    ids = ["n1", "n2", "n3"]

    @async_test
    async def body() -> None:
        async with Cluster(tmp_path, ids, options={**FAST_RAFT, "cache_lease": 1.0}) as c:
            await c.wait_leader()
            urls = [c.url(i) for i in ids]
            async with AsyncClient(urls, cache=True) as reader, AsyncClient(urls) as writer:
                await writer.put("x", "1")
                assert (await reader.get("x")).value == "1"
                assert reader.cache is not None and (reader.cache.hits, reader.cache.misses) == (0, 1)
                assert (await reader.get("x")).value == "1"  # from the cache: no request
                assert reader.cache.hits == 1
                started = time.monotonic()
                await writer.put("x", "2")
                held = time.monotonic() - started
                assert held >= 0.5, f"the write waited only {held:.3f} s for a 1 s lease"
                await asyncio.sleep(0.05)
                assert (await reader.get("x")).value == "2"  # the lease ran out before x=2 committed
                await reader.put("y", "mine")  # its own write drops nothing it did not cache
                assert (await reader.get("y")).value == "mine"

    body()
