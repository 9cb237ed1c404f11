"""Every bug knob of every catalog protocol is caught by random testing at the CLI's
default options: ``consensuskit sweep P --nodes 5 --nemesis all`` (10 s, 3 clients, the
default runtime), and the same sweep without a knob passes.

The default suite runs each knob's seeds only until the first one that catches it (at
most 40: the requirement is "some seed of a 40-seed sweep") and the knob-free sweep over
a few seeds; ``make sweep`` runs the full matrix (40 seeds each, with and without every
knob) and prints the table of catching seeds.

A catch must be a checker's verdict (an invariant, or a history that is not
linearizable): an exception, a history without a verdict or a run in which nothing
completed is not a catch.  And it must be the verdict the knob is about: ``TRIPS`` names,
for every knob, the invariants that break the rule the knob breaks.  A knob whose only
catch is some other invariant is not proved caught: that catch may come from a real bug
the knob happens to expose (PBFT's 2f+1 certificates with 5 replicas once made a knob that
did nothing there look caught).
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from consensuskit.catalog import default_registry
from consensuskit.cli import build_config
from consensuskit.sim import SimConfig
from consensuskit.sweep import SweepResult, run_seed, run_sweep

SEEDS = 40
CLEAN_SEEDS = 8  # per protocol in the default suite; 40 in the slow one
WORKERS = os.cpu_count() or 1

REGISTRY = default_registry()
PROTOCOLS = REGISTRY.names()
KNOBS = [(protocol, bug) for protocol in PROTOCOLS for bug in REGISTRY.get(protocol).bugs]
# Knobs that at default options only a runtime replicating before the leader's own sync
# exposes (the simulator's batched runtime, chosen per seed by the default "random" one):
# count-self-before-durable changes nothing elsewhere, and commit-previous-term needs a
# quorum of matches on an old-term entry, which 64-entry batches leave only to a new
# leader that counts itself at its durable index while followers already acknowledged
# its (stalled) no-op.
NEEDS_BATCHED_RUNTIME = {"count-self-before-durable", "commit-previous-term"}
# Knobs that break a liveness property (something that must eventually happen), which no
# per-step invariant can see in a 10 s random sweep, or that act only under an option the
# default sweep leaves off: each is caught where that property is measured or that option
# is on, by the test named here.  (pbft's read-only-f-plus-1 looked caught at default
# options only because 5 replicas counted 2f+1 = 3 for a certificate, a real safety bug
# that broke some seed; with quorums of ceil((n+f+1)/2) its knob does nothing there.)
CAUGHT_ELSEWHERE = {
    ("pbft", "read-only-f-plus-1"): "tests/check/test_pbft_read_only.py (read_only on: a stale read)",
    ("swim", "never-declare-dead"): "tests/protocols/swim/test_simulation.py (strong completeness)",
    ("swim", "drop-stale-alive"): "tests/scenarios/test_swim_scenarios.py (swim-restart-low-incarnation)",
}
HAS_RUNTIMES = "runtime" in {f.name for f in dataclasses.fields(SimConfig)}

# A service's own knobs (ServiceSpec.bugs) on the log protocols it runs on, swept with
# ``--service S``: (protocol, service, bug).
SERVICE_PROTOCOLS = ("raft", "multipaxos", "zab")
SERVICE_KNOBS = [
    (protocol, name, bug)
    for name in REGISTRY.services.names()
    for bug in REGISTRY.service(name).bugs
    for protocol in SERVICE_PROTOCOLS
]
# Service knobs a random sweep rarely exposes, also caught by a test that makes their
# situation on purpose (the slow matrix sweeps them, prints what it found and does not
# fail when a change of the simulator moves the one catching seed away).  None today:
# ``expire-ignores-keepalive`` was one (0-2 seeds of 40) until the etcd workload aimed
# half its refreshes at the leader's expiry (11-14 of 40 on each protocol).
SERVICE_CAUGHT_ELSEWHERE: dict[tuple[str, str], str] = {}
# One seed of the default sweep that catches each service knob (the default suite runs
# just that seed; the slow matrix sweeps 40 and prints the catching seeds: a change of a
# protocol moves them, and this table takes one from its output).
SERVICE_CATCHING_SEED = {
    ("raft", "lease-keys-survive"): 0,
    ("multipaxos", "lease-keys-survive"): 0,
    ("zab", "lease-keys-survive"): 0,
    ("raft", "no-promote-extend"): 0,
    ("multipaxos", "no-promote-extend"): 0,
    ("zab", "no-promote-extend"): 0,
    ("raft", "expire-ignores-keepalive"): 0,
    ("multipaxos", "expire-ignores-keepalive"): 0,
    ("zab", "expire-ignores-keepalive"): 0,
    ("raft", "ignore-new-leases"): 3,
    ("multipaxos", "ignore-new-leases"): 5,
    ("zab", "ignore-new-leases"): 15,
}


# What each knob swept here must trip: ``invariant NAME`` (a monitor's finding: ``MONITOR:
# FINDING``); the knobs of CAUGHT_ELSEWHERE are held to it by their own tests.
# A knob may break more than one invariant first, depending on the seed; each set names
# those that state the rule the knob breaks (or its direct consequence), nothing else.
TRIPS: dict[tuple[str, str], frozenset[str]] = {
    key: frozenset(names)
    for key, names in {
        ("2pc", "decide-before-log"): {"decision-not-durable"},
        ("2pc", "vote-before-log"): {"vote-not-durable"},
        ("3pc", "vote-before-log"): {"vote-not-durable"},
        ("3pc", "3pc-commit-when-uncertain"): {"validity", "atomicity"},
        ("paxos-commit", "vote-before-log"): {"vote-not-durable"},
        ("basic-paxos", "ignore-promise"): {"agreement"},
        ("basic-paxos", "accept-lower-ballot"): {"agreement"},
        ("fast-paxos", "ignore-promise"): {"agreement"},
        ("fast-paxos", "accept-lower-ballot"): {"agreement"},
        ("gossip", "keep-local"): {"gossip-monitor"},
        ("gossip-kv", "missing-keys-only"): {"gossip-kv-monitor"},
        ("gossip-kv", "physical-clock-only"): {"gossip-kv-monitor"},
        ("multipaxos", "lease-without-wait"): {"lease-uniqueness", "read-freshness"},
        ("multipaxos", "skip-phase1-on-takeover"): {"one-value-per-slot"},
        ("multipaxos", "promise-after-wipe"): {"one-value-per-slot"},
        # A leader that counts itself before its disk holds the slot can lose a chosen
        # value in a crash: a later read is served from before it, or the slot is rechosen
        # (seen by the votes, or by a node that learned the first value).
        ("multipaxos", "count-self-before-durable"): {
            "read-freshness",
            "one-value-per-slot",
            "learned-agreement",
        },
        ("pbft", "early-commit"): {"committed-prepared"},
        ("pbft", "new-view-ignores-prepared"): {"committed-keeps-seq"},
        ("pbft", "small-quorums"): {"committed-keeps-seq", "committed-prepared"},
        ("raft", "commit-previous-term"): {"commit-rule"},
        ("raft", "vote-twice"): {"election-safety"},
        ("raft", "skip-log-check"): {"log-matching"},
        ("raft", "stale-read"): {"read-freshness"},
        ("raft", "vote-after-wipe"): {"leader-completeness", "election-safety"},
        ("raft", "count-self-before-durable"): {"leader-completeness"},
        ("sharded-raft", "read-ignores-locks"): {"conservation"},
        ("swim", "foreign-incarnation"): {"incarnation-owner"},
        ("swim", "alive-overrides-suspect"): {"precedence"},
        ("swim", "push-pull-resurrects"): {"precedence"},
        ("swim", "unbounded-retransmit"): {"dissemination-bound"},
        # Both knobs take the epoch before the synced txns are on disk: the disk can say
        # the epoch without its history before (or when) the early ACK is counted.
        ("zab", "ack-before-persist"): {"epoch-after-history", "durable-ack"},
        ("zab", "epoch-before-persist"): {"epoch-after-history"},
        ("zab", "trunc-across-epoch"): {"trunc-within-epoch"},
        ("zab", "vote-ignores-epoch"): {"election-order"},
        ("zab", "paper-propose-acked"): {"prefix-consistency"},
        ("zab", "paper-redundant-propose"): {"zxid-order"},
        ("zab", "paper-commit-ld-ack"): {"commit-order"},
        # A wiped voter's vote or ACK elects or establishes a leader without committed
        # txns (its history is then missing them), or a second leader of an epoch.
        ("zab", "vote-after-wipe"): {"primary-integrity", "prefix-consistency", "leadership"},
        # The etcd service's knobs, on every protocol that runs it (its monitor's findings).
        ("etcd", "expire-ignores-keepalive"): {"etcd-monitor: expire-honours-keepalive"},
        ("etcd", "lease-keys-survive"): {"etcd-monitor: lease-keys-deleted"},
        ("etcd", "no-promote-extend"): {"etcd-monitor: promote-extends"},
        ("etcd", "ignore-new-leases"): {"etcd-monitor: lease-expires"},
    }.items()
}


def tripped(reason: str) -> str:
    """The invariant a sweep's failure reason names: ``invariant NAME: ...`` -> NAME, and
    for a monitor whose finding is named (``invariant M-monitor: FINDING: ...``) ``M-monitor:
    FINDING``; '' for a reason that is not an invariant."""
    if not reason.startswith("invariant "):
        return ""
    name, _, rest = reason[len("invariant ") :].partition(": ")
    finding = rest.split(": ", 1)[0]
    if name.endswith("-monitor") and finding and " " not in finding:
        return f"{name}: {finding}"
    return name


def assert_trips(key: tuple[str, str], reason: str) -> None:
    """``reason`` is a catch of the knob ``key`` ((protocol or service, bug)): it names one
    of the invariants TRIPS gives it (a monitor's finding also matches the bare monitor)."""
    name = tripped(reason)
    expected = TRIPS[key]
    assert name in expected or name.split(": ")[0] in expected, (
        f"{key[0]} --bug {key[1]} was caught by {name or reason!r}, not by {sorted(expected)}: "
        f"is that the knob, or a real bug it exposed? ({reason})"
    )


def default_config(protocol: str, bugs: list[str] | None = None, service: str | None = None) -> SimConfig:
    """What ``consensuskit sweep PROTOCOL --nodes 5 --nemesis all [--service S] [--bug B]`` runs."""
    return build_config(protocol, 5, 0, 10.0, 3, "all", bugs, service=service)


def is_catch(reason: str) -> bool:
    return reason.startswith("invariant ") or reason == "history is not linearizable"


def first_catch(protocol: str, bug: str) -> tuple[int, str] | None:
    cfg = default_config(protocol, [bug])
    for seed in range(SEEDS):
        outcome = run_seed(cfg, seed)
        if not outcome.ok:
            assert is_catch(outcome.reason), (seed, outcome.reason)
            return seed, outcome.reason
    return None


def test_every_protocol_has_knobs_and_the_matrix_names_them_all():
    assert {"raft", "multipaxos", "basic-paxos", "fast-paxos", "zab"} <= set(PROTOCOLS)
    for protocol in ("raft", "multipaxos"):
        assert (protocol, "count-self-before-durable") in KNOBS
    assert all(REGISTRY.get(p).bugs for p in PROTOCOLS)


def test_every_knob_names_the_invariants_it_trips():
    service_knobs = {(service, bug) for _, service, bug in SERVICE_KNOBS}
    assert set(TRIPS) == (set(KNOBS) - set(CAUGHT_ELSEWHERE)) | service_knobs
    assert all(TRIPS.values())


@pytest.mark.parametrize(
    ("reason", "name"),
    [
        ("invariant election-safety: n4 and n5 both lead term 5 at t=10.009816", "election-safety"),
        (
            "invariant etcd-monitor: lease-expires: leader n3 still holds lease 7 at t=15.000000",
            "etcd-monitor: lease-expires",
        ),
        ("invariant gossip-monitor: replicas did not converge after settle", "gossip-monitor"),
        ("history is not linearizable", ""),
        ("exception KeyError: 'x'", ""),
    ],
)
def test_tripped_reads_the_invariant_of_a_reason(reason: str, name: str):
    assert tripped(reason) == name


def test_a_catch_by_another_invariant_is_not_the_knobs():
    assert_trips(("raft", "vote-twice"), "invariant election-safety: n4 and n5 both lead term 5")
    assert_trips(("etcd", "ignore-new-leases"), "invariant etcd-monitor: lease-expires: leader n3 ...")
    with pytest.raises(AssertionError, match="real bug"):
        assert_trips(("raft", "vote-twice"), "invariant log-matching: n5 appended 3/104")
    with pytest.raises(AssertionError, match="real bug"):
        assert_trips(("etcd", "ignore-new-leases"), "invariant etcd-monitor: promote-extends: t=3.6")


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("protocol", "bug"), KNOBS)
def test_knob_is_caught_at_default_options(protocol: str, bug: str):
    if bug in NEEDS_BATCHED_RUNTIME and not HAS_RUNTIMES:
        pytest.skip("needs the simulator's batched runtime")
    if (protocol, bug) in CAUGHT_ELSEWHERE:
        pytest.skip(f"a liveness knob, caught by {CAUGHT_ELSEWHERE[protocol, bug]}")
    caught = first_catch(protocol, bug)
    assert caught is not None, f"{protocol} --bug {bug} went unnoticed in {SEEDS} default seeds"
    assert_trips((protocol, bug), caught[1])


@pytest.mark.timeout(600)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_default_sweep_without_a_knob_passes(protocol: str):
    result = run_sweep(default_config(protocol), range(CLEAN_SEEDS), workers=WORKERS, progress=False)
    assert [(f.seed, f.reason) for f in result.failures] == []


def sweep(protocol: str, bugs: list[str] | None) -> SweepResult:
    return run_sweep(default_config(protocol, bugs), range(SEEDS), workers=WORKERS, progress=False)


@pytest.mark.slow
@pytest.mark.timeout(7200)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_full_matrix(protocol: str, capsys):
    """40 seeds per knob and without one; prints knob -> catching seeds."""
    clean = sweep(protocol, None)
    assert [(f.seed, f.reason) for f in clean.failures] == []
    table = []
    for bug in REGISTRY.get(protocol).bugs:
        if (bug in NEEDS_BATCHED_RUNTIME and not HAS_RUNTIMES) or (protocol, bug) in CAUGHT_ELSEWHERE:
            continue
        result = sweep(protocol, [bug])
        seeds = [f.seed for f in result.failures]
        assert all(is_catch(f.reason) for f in result.failures), [f.reason for f in result.failures]
        table.append(f"{protocol:12} {bug:28} {len(seeds):2}/{SEEDS} {seeds} {_tripped_names(result)}")
        assert seeds, f"{protocol} --bug {bug} went unnoticed in {SEEDS} default seeds"
        assert_trips((protocol, bug), result.failures[0].reason)
    with capsys.disabled():
        print("\n" + "\n".join(table))


def test_every_service_knob_has_a_seed_or_a_test_that_catches_it():
    assert ("raft", "etcd", "no-promote-extend") in SERVICE_KNOBS
    for protocol, service, bug in SERVICE_KNOBS:
        assert (protocol, bug) in SERVICE_CATCHING_SEED or (service, bug) in SERVICE_CAUGHT_ELSEWHERE


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("protocol", "service", "bug"), SERVICE_KNOBS)
def test_service_knob_is_caught_at_default_options(protocol: str, service: str, bug: str):
    """A fixed seed of ``sweep PROTOCOL --service S --nemesis all --bug B`` catches it."""
    if (protocol, bug) not in SERVICE_CATCHING_SEED:
        pytest.skip(f"caught by {SERVICE_CAUGHT_ELSEWHERE[service, bug]}")
    outcome = run_seed(default_config(protocol, [bug], service), SERVICE_CATCHING_SEED[protocol, bug])
    assert not outcome.ok and is_catch(outcome.reason), outcome.reason
    assert_trips((service, bug), outcome.reason)


def _tripped_names(result: SweepResult) -> list[str]:
    """The distinct invariants a knob's sweep tripped (the slow matrices print them)."""
    return sorted({tripped(f.reason) for f in result.failures})


@pytest.mark.slow
@pytest.mark.timeout(7200)
@pytest.mark.parametrize("protocol", SERVICE_PROTOCOLS)
@pytest.mark.parametrize("service", sorted({service for _, service, _ in SERVICE_KNOBS}))
def test_full_service_matrix(protocol: str, service: str, capsys):
    """40 seeds of ``--service S`` per service knob and without one; prints knob ->
    seeds (the knobs caught elsewhere too: how often a random run finds them)."""
    config = default_config(protocol, service=service)
    clean = run_sweep(config, range(SEEDS), workers=WORKERS, progress=False)
    assert [(f.seed, f.reason) for f in clean.failures] == []
    table = []
    for bug in REGISTRY.service(service).bugs:
        config = default_config(protocol, [bug], service)
        result = run_sweep(config, range(SEEDS), workers=WORKERS, progress=False)
        seeds = [f.seed for f in result.failures]
        assert all(is_catch(f.reason) for f in result.failures), [f.reason for f in result.failures]
        caught = f"{len(seeds):2}/{SEEDS} {seeds} {_tripped_names(result)}"
        table.append(f"{protocol:12} {service:8} {bug:28} {caught}")
        if (service, bug) not in SERVICE_CAUGHT_ELSEWHERE:
            assert seeds, f"{protocol} --service {service} --bug {bug} went unnoticed in {SEEDS} seeds"
        if seeds:
            assert_trips((service, bug), result.failures[0].reason)
    with capsys.disabled():
        print("\n" + "\n".join(table))
