"""Prometheus metrics of one node, in its own ``CollectorRegistry`` (never the global one,
so several nodes can live in one process, as in tests).

Hot paths only bump plain counters (``RuntimeStats``, the transport's and the storage's
stats); this module turns them into metric families when ``/metrics`` is scraped.  The
per-request latency histogram is plain counts too (``LatencyHistogram``: one bisect and two
additions, on the event loop's thread only): prometheus_client's Histogram takes a lock per
bucket and sum update, about 2% of a loaded leader's CPU.  Only the per-sync histograms,
observed once per group commit, are prometheus_client's own.

A node's own gauges follow its capabilities (core/capabilities.py): ``generation`` (by
its name) for every node; ``term``, ``is_leader`` and ``peer_match_index`` where it has a
leader; the log positions where it has a replicated log; ``lease_remaining_seconds``
where it serves lease reads; ``cluster_level`` where its state machine keeps one.  A
metric a node cannot have is absent, never 0.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from consensuskit.core.capabilities import HasLeader, Inspectable, LeaseReads, ReplicatedLog, peer_progress
from consensuskit.server import gc_watch
from consensuskit.server.runtime import LAG_BUCKETS, NodeRuntime
from consensuskit.statemachines.levels import level_of

PREFIX = "consensuskit"
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Transport per-peer fields that are levels, not running totals.
GAUGE_FIELDS = frozenset({"queue_length", "queued_bytes", "connected"})


class NodeMetrics:
    def __init__(self, node_id: str, protocol: str) -> None:
        self.node_id = node_id
        self.protocol = protocol
        self.registry = CollectorRegistry(auto_describe=False)
        self.fsync_seconds = Histogram(
            f"{PREFIX}_fsync_seconds",
            "Duration of one group-commit sync (all fsyncs of one batch)",
            buckets=FSYNC_BUCKETS,
            registry=self.registry,
        )
        self.sync_outputs = Histogram(
            f"{PREFIX}_sync_released_outputs",
            "Messages and answers released by one sync (the group-commit batch size)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.request_seconds = LatencyHistogram(REQUEST_BUCKETS)
        self._runtime: NodeRuntime | None = None
        self._transport_stats: Callable[[], Any] | None = None
        self._client_connections: Any = None  # conn_guard.Guards of the client listener
        self._collector = _Collector(self)
        self.registry.register(self._collector)

    def attach(self, runtime: NodeRuntime, transport_stats: Callable[[], Any] | None = None) -> None:
        self._runtime = runtime
        self._transport_stats = transport_stats

    def attach_client_connections(self, guards: Any) -> None:
        """The client listener's ``conn_guard.Guards`` (connections, limits hit)."""
        self._client_connections = guards

    def on_sync(self, seconds: float, outputs: int) -> None:
        self.fsync_seconds.observe(seconds)
        self.sync_outputs.observe(outputs)

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class LatencyHistogram:
    """Client API latency by operation, as plain per-bucket counts (the module rules).
    Observed from the event loop's thread only; read when ``/metrics`` is scraped."""

    __slots__ = ("bounds", "by_label")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.by_label: dict[str, LatencyCounts] = {}

    def labels(self, label: str) -> LatencyCounts:
        counts = self.by_label.get(label)
        if counts is None:
            counts = self.by_label[label] = LatencyCounts(self.bounds)
        return counts


class LatencyCounts:
    """One label's counts: ``counts[i]`` observations in (bounds[i-1], bounds[i]], the
    last one above every bound (+Inf), and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound falls in that bound's bucket (le="bound").
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds


class _Collector:
    def __init__(self, owner: NodeMetrics) -> None:
        self.owner = owner

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        owner = self.owner
        info = GaugeMetricFamily(f"{PREFIX}_node_info", "This node", labels=["node", "protocol"])
        info.add_metric([owner.node_id, owner.protocol], 1)
        yield info
        yield from _request_metrics(owner.request_seconds)
        runtime = owner._runtime
        if runtime is None:
            return
        yield from _node_metrics(runtime)
        yield from _runtime_metrics(runtime)
        if owner._transport_stats is not None:
            yield from _transport_metrics(owner._transport_stats())
        if owner._client_connections is not None:
            yield from _connection_metrics(owner._client_connections)
        yield from _storage_metrics(getattr(runtime.raw_storage, "stats", None))
        yield from _gc_metrics(gc_watch.stats())


def _request_metrics(histogram: LatencyHistogram) -> Iterator[Metric]:
    doc = "Client API latency from request to answer, by operation"
    family = HistogramMetricFamily(f"{PREFIX}_http_request_seconds", doc, labels=["op"])
    for label, counts in histogram.by_label.items():  # first observed first, as before
        family.add_metric([label], _cumulative(histogram.bounds, counts.counts), counts.total)
    yield family


def _gc_metrics(stats: gc_watch.GcStats | None) -> Iterator[Metric]:
    if stats is None:
        return
    count = CounterMetricFamily(f"{PREFIX}_gc_collections", "Garbage collections", labels=["generation"])
    seconds = CounterMetricFamily(
        f"{PREFIX}_gc_seconds", "Time in garbage collections", labels=["generation"]
    )
    longest = GaugeMetricFamily(f"{PREFIX}_gc_max_seconds", "The longest collection", labels=["generation"])
    for generation in range(3):
        count.add_metric([str(generation)], stats.collections[generation])
        seconds.add_metric([str(generation)], stats.seconds[generation])
        longest.add_metric([str(generation)], stats.max_seconds[generation])
    yield count
    yield seconds
    yield longest


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _labelled_counter(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=[label])
    for key, count in sorted(values.items()):
        family.add_metric([key], count)
    return family


def _connection_metrics(guards: Any) -> Iterator[Metric]:
    stats = guards.stats
    yield _gauge("http_connections", "Client connections open now", len(guards.connections))
    yield _gauge("http_buffered_bytes", "Client request bytes received and not yet answered", guards.buffered)
    closes = {
        "header-timeout": stats.header_timeouts,
        "body-timeout": stats.body_timeouts,
        "idle": stats.idle_closed,
        "too-many-connections": stats.refused_connections,
        "too-many-buffered-bytes": stats.refused_buffered,
    }
    yield _labelled_counter(
        "http_connection_closes", "Client connections closed by a limit, by reason", "reason", closes
    )


def _node_metrics(runtime: NodeRuntime) -> Iterator[Metric]:
    """The node's own gauges, each only where the node has the capability behind it."""
    node = runtime.node
    if not isinstance(node, Inspectable) or runtime.failure is not None:
        return
    status = node.node_status()
    generation = GaugeMetricFamily(
        f"{PREFIX}_generation", "The protocol's generation number (term, ballot round, ...)", labels=["name"]
    )
    generation.add_metric([status.generation_name], status.generation)
    yield generation
    if isinstance(node, HasLeader):
        yield _gauge("term", "Current term (the leader's generation)", status.generation)
        yield _gauge("is_leader", "1 if this node is the leader", 1 if node.is_leader() else 0)
    if isinstance(node, ReplicatedLog):
        pos = node.log_position()
        yield _gauge("commit_index", "Highest log index known committed", pos.commit)
        yield _gauge("applied_index", "Highest log index applied to the state machine", pos.applied)
        yield _gauge("apply_lag", "Committed entries not yet applied", pos.commit - pos.applied)
        yield _gauge("last_log_index", "Index of the last log entry", pos.last_index)
        yield _gauge("snapshot_index", "Last index covered by the snapshot", pos.snapshot_index)
    if isinstance(node, LeaseReads):
        lease = node.lease_remaining()
        yield _gauge("lease_remaining_seconds", "Leader lease left by this node's clock", lease)
    level = level_of(node)
    if level is not None:
        yield _gauge("cluster_level", "The cluster level this node applied (statemachines/levels.py)", level)
    peers = peer_progress(status.details)
    if isinstance(node, HasLeader) and isinstance(status.details.get("peers"), dict):
        match = GaugeMetricFamily(
            f"{PREFIX}_peer_match_index",
            "Leader only: highest index known replicated on a peer",
            labels=["peer"],
        )
        for peer, progress in sorted(peers.items()):
            match.add_metric([peer], progress.get("match", 0))
        yield match


def _runtime_metrics(runtime: NodeRuntime) -> Iterator[Metric]:
    stats = runtime.stats
    roles = stats.roles
    yield _counter("proposals", "Client writes handed to this node while it led", stats.proposals)
    yield _counter("commits", "Times the commit index advanced", stats.records.get("commit", 0))
    yield _counter("elections", "Elections started (terms campaigned in)", roles.get("candidate", 0))
    yield _counter("pre_votes", "Pre-vote rounds started", roles.get("pre-candidate", 0))
    yield _counter("leader_elected", "Times this node became leader", roles.get("leader", 0))
    yield _counter("inputs", "Inputs handled (messages, requests, timers, admin calls)", stats.inputs)
    yield _counter("batches", "Driver steps (each one batch of inputs)", stats.batches)
    yield _counter("syncs", "Group-commit syncs completed", stats.syncs)
    yield _counter("request_timeouts", "Client requests that got no answer in time", stats.timeouts)
    yield _labelled_counter("messages_received", "Peer messages handled, by type", "type", stats.received)
    yield _labelled_counter("messages_sent", "Peer messages released to the transport", "type", stats.sent)
    yield _labelled_counter("client_requests", "Client requests handed to the node", "op", stats.requests)
    yield _labelled_counter("client_answers", "Answers released, by outcome", "result", stats.answers)
    yield _labelled_counter("events", "Protocol trace events, by kind", "kind", stats.records)
    yield _histogram(
        "loop_lag_seconds",
        "How late the event loop ran a timer (a probe every 50 ms)",
        stats.loop_lag,
        stats.loop_lag_sum,
    )
    yield _histogram(
        "peer_gap_seconds",
        "Silence between two consecutive messages from one peer (a follower's heartbeat gaps)",
        stats.peer_gap,
        stats.peer_gap_sum,
    )
    yield _gauge("loop_lag_max_seconds", "The largest loop lag seen", stats.loop_lag_max)
    yield _gauge("peer_gap_max_seconds", "The longest silence of a peer seen", stats.peer_gap_max)
    yield _gauge("fsync_max_seconds", "The longest group-commit sync seen", stats.sync_seconds_max)


def _histogram(name: str, doc: str, counts: list[int], total: float) -> HistogramMetricFamily:
    """A histogram from plain per-bucket counts (``LAG_BUCKETS`` bounds, then +Inf)."""
    return HistogramMetricFamily(
        f"{PREFIX}_{name}", doc, buckets=_cumulative(LAG_BUCKETS, counts), sum_value=total
    )


def _cumulative(bounds: Sequence[float], counts: list[int]) -> list[tuple[str, float]]:
    """Prometheus buckets (le, observations at or below it) from per-bucket counts."""
    cumulative: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*map(str, bounds), "+Inf"), counts, strict=True):
        running += count
        cumulative.append((bound, running))
    return cumulative


def _transport_metrics(stats: Any) -> Iterator[Metric]:
    if stats is None:
        return
    peers = getattr(stats, "peers", None) or {}
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    for peer, peer_stats in sorted(peers.items()):
        for name, value in _numbers(peer_stats).items():
            family = families.get(name)
            if family is None:
                doc = f"Transport {name.replace('_', ' ')}, per peer"
                cls = GaugeMetricFamily if name in GAUGE_FIELDS else CounterMetricFamily
                family = families[name] = cls(f"{PREFIX}_transport_{name}", doc, labels=["peer"])
            family.add_metric([peer], value)
    yield from families.values()
    for name, value in _numbers(stats).items():
        yield _counter(f"transport_{name}", f"Transport {name.replace('_', ' ')}", value)


def _storage_metrics(stats: Any) -> Iterator[Metric]:
    for name, value in _numbers(stats).items():
        yield _gauge(f"storage_{name}", f"Storage {name.replace('_', ' ')}", value)


def _numbers(obj: Any) -> dict[str, float]:
    """Numeric fields of a stats object (dataclass, dict or plain object)."""
    if obj is None:
        return {}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif isinstance(obj, dict):
        items = dict(obj)
    else:
        items = {k: getattr(obj, k) for k in dir(obj) if not k.startswith("_")}
    return {
        str(k): float(v) for k, v in sorted(items.items()) if isinstance(v, (int, float)) and not callable(v)
    }
