"""services/etcd_watch_hub.py: the hub hands every watch each event of its range once, in
revision order, however watches join, fall behind, catch up or are compacted away.

The hub runs here on a bare store, with its owner's part (services/etcd_api.py: read the
store for the hub, a watch behind the hub reading for itself) written out as small as it
can be; the real owner is tested on a node in tests/services/test_etcd_inprocess.py."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.services import etcd_watch_hub
from consensuskit.services.etcd import make_op
from consensuskit.services.etcd_watch_hub import ALL_KEYS, QUEUED, StreamProgress, Watcher, WatchHub
from consensuskit.statemachines.mvcc import DELETE_EVENT, MVCCStore, in_range

KEYS = [b"a", b"b", b"b1", b"c"]


def run(store: MVCCStore, kind: str, **body: Any) -> Any:
    return store.execute(make_op(kind, "", body))


def feed(store: MVCCStore, hub: WatchHub) -> int:
    """The owner's part for the hub: its reads up to the store's revision; the reads."""
    reads = 0
    assert hub.revision is not None
    while hub.revision < store.revision:
        answer = run(store, "watch", **ALL_KEYS, start_revision=hub.revision + 1, prev_kv=True)
        if answer.get("error") == "compacted":
            hub.compacted(answer["compact_revision"])
            continue
        hub.dispatch(answer)
        reads += 1
    return reads


class Client:
    """One watch and what its client received: the owner's part for a watch."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.start = watcher.next
        self.events: list[tuple[int, int, bytes, Any, Any]] = []  # (rev, type, key, kv, prev)
        self.compacted: int | None = None
        self.own_reads = 0

    def take(self, store: MVCCStore, hub: WatchHub) -> bool:
        """One step of the watch's loop; False when it has nothing to do."""
        w = self.watcher
        if self.compacted is not None:
            return False
        if w.pending:
            kind, data = w.pending.popleft()
            if kind == "compacted":
                self.compacted = data
            else:
                self.record(data[1])
            return True
        if hub.join(w) or store.revision < w.next:
            return False
        answer = run(store, "watch", key=w.key, range_end=w.end, start_revision=w.next, prev_kv=w.prev_kv)
        if answer.get("error") == "compacted":
            self.compacted = answer["compact_revision"]
            return True
        self.own_reads += 1
        w.next = max(w.next, answer["next"])
        self.record([e for e in answer["events"] if e[0] not in w.filters])
        return True

    def record(self, events: Any) -> None:
        for etype, kv, prev in events:
            self.events.append((kv[2], etype, kv[0], kv, prev))


def expected(history: list[tuple[int, int, bytes, Any, Any]], client: Client) -> list[Any]:
    w = client.watcher
    return [
        (rev, etype, key, kv, prev if w.prev_kv else None)
        for rev, etype, key, kv, prev in history
        if rev >= client.start
        and etype not in w.filters
        and (in_range(key, w.key, w.end) if w.end else key == w.key)
    ]


def history_of(store: MVCCStore, since: int) -> list[Any]:
    answer = run(store, "watch", **ALL_KEYS, start_revision=since, prev_kv=True)
    return [(kv[2], etype, kv[0], kv, prev) for etype, kv, prev in answer["events"]]


RANGES = st.sampled_from([(b"a", b""), (b"b", b""), (b"b", b"c"), (b"a", b"\0"), (b"b1", b"")])
FILTERS = st.sampled_from([(), (0,), (1,)])  # etcd's NOPUT and NODELETE: event types 0 and 1
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(KEYS)),
        st.tuples(st.just("delete"), st.sampled_from(KEYS)),
        st.tuples(st.just("txn"), st.sampled_from(KEYS)),
        st.tuples(st.just("watch"), RANGES, st.integers(0, 6), st.booleans(), FILTERS),
        st.tuples(st.just("feed")),
        st.tuples(st.just("take"), st.integers(0, 7), st.integers(1, 4)),
        st.tuples(st.just("compact"), st.integers(0, 3)),
    ),
    max_size=70,
)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, queued=st.sampled_from([1, 2, QUEUED]))
def test_every_watch_gets_each_event_of_its_range_once_in_order(steps, queued):
    original = etcd_watch_hub.QUEUED
    etcd_watch_hub.QUEUED = queued  # a small queue: watches fall behind and come back
    try:
        _check(steps)
    finally:
        etcd_watch_hub.QUEUED = original


def _check(steps: list[Any]) -> None:
    store, hub = MVCCStore(), WatchHub()
    hub.start(store.revision)
    clients: list[Client] = []
    history: list[Any] = []  # every event, recorded as it is written (compaction prunes the store's)
    value = 0
    for step in steps:
        before = store.revision
        if step[0] == "put":
            value += 1
            run(store, "put", key=step[1], value=b"%d" % value)
        elif step[0] == "delete":
            run(store, "delete_range", key=step[1])
        elif step[0] == "txn":  # two keys in one revision
            value += 1
            puts = [{"put": {"key": step[1], "value": b"%d" % value}}, {"put": {"key": b"c", "value": b"t"}}]
            run(store, "txn", success=puts)
        elif step[0] == "watch":
            (key, end), back, prev, filters = step[1], step[2], step[3], step[4]
            start = max(1, store.compact_revision, store.revision + 1 - back)  # 0 would mean now
            clients.append(Client(Watcher(key, end, prev, frozenset(filters), start)))
        elif step[0] == "feed":
            feed(store, hub)
        elif step[0] == "take" and clients:
            client = clients[step[1] % len(clients)]
            for _ in range(step[2]):
                client.take(store, hub)
        elif step[0] == "compact" and store.revision > 1:
            run(store, "compact", revision=max(store.compact_revision, store.revision - step[1]))
        if store.revision > before:
            history += history_of(store, before + 1)
    # the end: everything written is read and taken
    for _ in range(1000):
        feed(store, hub)
        if not any([client.take(store, hub) for client in clients]):
            break
    for client in clients:
        got = client.events
        # A deletion at or before the compact revision may be gone before any read saw it
        # (compaction drops a key whose last change it is, as etcd's does); nothing else.
        want = [
            e
            for e in expected(history, client)
            if e[1] != DELETE_EVENT or e[0] > store.compact_revision or e[:4] in [g[:4] for g in got]
        ]
        if client.compacted is None:
            assert len(got) == len(want)
        else:  # ended by a compaction past what it had: a prefix
            assert len(got) <= len(want)
            assert client.compacted > (got[-1][0] if got else client.start - 1)
        for event, wanted in zip(got, want, strict=False):
            assert event[:4] == wanted[:4]
            # a previous value compacted before the event was read is gone (etcd's too)
            assert event[4] == wanted[4] or (event[4] is None and wanted[4][2] < store.compact_revision)


def test_idle_watches_cost_one_read_per_move_of_the_revision():
    store, hub = MVCCStore(), WatchHub()
    hub.start(store.revision)
    clients = [Client(Watcher(b"idle/%d" % i, b"", False, frozenset(), 2)) for i in range(100)]
    for client in clients:
        assert client.take(store, hub) is False  # created: joined at once
    reads = 0
    for i in range(20):
        run(store, "put", key=b"busy", value=b"%d" % i)
        reads += feed(store, hub)
        for client in clients:
            client.take(store, hub)
    assert reads == 20 and sum(c.own_reads for c in clients) == 0 and hub.synced == 100
    run(store, "put", key=b"idle/7", value=b"x")
    feed(store, hub)
    assert [c.watcher.pending for c in clients if c.watcher.pending] == [
        clients[7].watcher.pending
    ] and clients[7].watcher.pending[0][1][1][0][1][0] == b"idle/7"


def test_a_watch_whose_queue_is_full_leaves_the_hub_and_reads_the_rest_itself():
    store, hub = MVCCStore(), WatchHub()
    hub.start(store.revision)
    slow = Client(Watcher(b"k", b"", False, frozenset(), store.revision + 1))
    assert slow.take(store, hub) is False and slow.watcher.synced
    for i in range(QUEUED + 5):
        run(store, "put", key=b"k", value=b"%d" % i)
        feed(store, hub)
    w = slow.watcher
    assert len(w.pending) == QUEUED and not w.synced and hub.synced == 0
    assert w.next == store.revision - 4  # the first revision it was not handed
    while slow.take(store, hub):
        pass
    assert [e[3][4] for e in slow.events] == [b"%d" % i for i in range(QUEUED + 5)]
    assert slow.own_reads == 1 and w.synced  # caught up by one read of its own, then joined


def test_a_compaction_the_hub_fell_behind_ends_its_watches():
    store, hub = MVCCStore(), WatchHub()
    hub.start(store.revision)
    client = Client(Watcher(b"k", b"", False, frozenset(), store.revision + 1))
    client.take(store, hub)
    for i in range(5):
        run(store, "put", key=b"k", value=b"%d" % i)
    run(store, "compact", revision=store.revision)
    ahead = Client(Watcher(b"k", b"", False, frozenset(), store.revision))  # joins past the hub
    assert ahead.take(store, hub) is False and ahead.watcher.synced
    feed(store, hub)
    assert list(client.watcher.pending) == [("compacted", store.revision)] and hub.revision == store.revision
    assert not client.watcher.synced and hub.synced == 1  # the other missed nothing
    assert [e[1][2] for e in ahead.watcher.pending[0][1][1]] == [store.revision]


def test_a_progress_request_waits_for_every_watch_of_the_stream_to_catch_up():
    stream = StreamProgress()
    assert stream.answer() == (False, None)  # nothing asked
    stream.ask()
    assert stream.answer() == (True, None)  # no watch: the store's revision, at once
    a, b = (Watcher(b"a", b"", False, frozenset(), 5) for _ in range(2))
    stream.watchers.update({1: a, 2: b})
    stream.ask()
    assert a.progress_asked and b.progress_asked and a.wake.is_set()
    stream.caught_up(1, 9)
    assert stream.answer() == (False, None)  # watch 2 has not caught up
    stream.ask()  # a second request while one waits: answered with it
    stream.caught_up(2, 7)
    assert stream.answer() == (True, 7)  # the least: both have every event up to 7
    assert stream.answer() == (False, None)
    stream.ask()
    stream.caught_up(1, 12)
    stream.gone(2)  # a watch that ends owes nothing
    assert stream.answer() == (True, 12) and list(stream.watchers) == [1]
