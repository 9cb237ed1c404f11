"""server/metrics.py: the per-request latency histogram (plain counts) exposes exactly
what prometheus_client's own Histogram would for the same observations."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from consensuskit.server.metrics import REQUEST_BUCKETS, LatencyHistogram, NodeMetrics

OPS = ("get", "put", "delete")
# Values on and around every bound (a value equal to a bound counts in its bucket).
EDGES = [v for b in REQUEST_BUCKETS for v in (b, b / 1.001, b * 1.001)] + [0.0, 10.0]
observations = st.lists(
    st.tuples(st.sampled_from(OPS), st.one_of(st.sampled_from(EDGES), st.floats(0, 10))), max_size=60
)


def exposition(text: bytes) -> list[str]:
    return [
        line
        for line in text.decode().splitlines()
        if line.startswith("consensuskit_http_request_seconds") and "_created" not in line
    ]


@given(observations)
def test_request_histogram_exposes_what_prometheus_client_would(seen: list[tuple[str, float]]) -> None:
    metrics = NodeMetrics("n1", "raft")
    reference_registry = CollectorRegistry(auto_describe=False)
    reference = Histogram(
        "consensuskit_http_request_seconds",
        "Client API latency from request to answer, by operation",
        ["op"],
        buckets=REQUEST_BUCKETS,
        registry=reference_registry,
    )
    for op, seconds in seen:
        metrics.request_seconds.labels(op).observe(seconds)
        reference.labels(op).observe(seconds)
    ours = exposition(metrics.exposition()[0])
    theirs = exposition(generate_latest(reference_registry))
    assert ours == theirs


def test_counts_fall_in_the_bucket_of_their_upper_bound() -> None:
    histogram = LatencyHistogram((0.1, 1.0))
    counts = histogram.labels("put")
    for seconds in (0.1, 0.5, 1.0, 2.0, 0.0):
        counts.observe(seconds)
    assert counts.counts == [2, 2, 1]
    assert counts.total == 3.6
    assert histogram.labels("put") is counts
