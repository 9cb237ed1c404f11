"""Configuration of one simulation run: the network model and the job.

Both are plain keyword-only dataclasses so the CLI, scenarios and sweeps build them
the same way.  Probabilities apply per message; times are virtual seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# "wipe" (crash, lose every byte of storage, restart as a rejoining node) applies only to
# protocols whose registry entry says survives_disk_loss; appended last, so the random
# nemesis's choices for the other kinds keep their order.
NEMESIS_KINDS = (
    "partition",
    "crash",
    "pause",
    "loss",
    "dup",
    "reorder",
    "skew",
    "wipe",
    "strike",
    "membership",
)
# "all" names every kind but "membership" (a member removed and added back through the
# leader, for protocols with the MembershipChange capability), which came later: a
# seed's run under "all" stays what it was (sweeps, and the regression seeds tests and
# notes name, reproduce).  Ask for it by name: "all,membership".
ALL_NEMESIS = tuple(k for k in NEMESIS_KINDS if k != "membership")

# How the simulator drives a node (see Simulation): "batched" models the server (inputs
# within ``batch_window`` form one batch, on_batch_end / send_early / on_durable, sync
# times drawn from a distribution); "unbatched" hands over one input per batch, with no
# early sends and a fixed sync time; "random" picks one of the two per seed, from the seed.
RUNTIMES = ("batched", "unbatched", "random")
# Seconds the linearizability checker searches a run's history before answering unknown.
DEFAULT_LINEARIZABILITY_TIMEOUT = 60.0

# Fields of NetworkConfig that may be overridden per directed link (set_link).
LINK_FIELDS = ("latency_min", "latency_max", "loss", "duplicate", "reorder", "reorder_delay")


@dataclass(slots=True, kw_only=True)
class NetworkConfig:
    latency_min: float = 0.001  # seconds, one-way, uniform in [min, max] per message
    latency_max: float = 0.005
    loss: float = 0.0  # baseline probabilities per message
    duplicate: float = 0.0
    reorder: float = 0.0  # probability of an extra delay in [0, reorder_delay]
    reorder_delay: float = 0.02
    fsync_latency: float = 0.0005  # virtual time the storage sync barrier takes (its mean)
    # Batched runtime only: a sync takes fsync_latency * a log-normal factor of mean 1 and
    # this sigma (0: always fsync_latency); sigma 1 makes ~2% of syncs 5x slower than mean.
    fsync_sigma: float = 1.0
    # Batched runtime only: inputs reaching a node within this window of the batch's
    # first input are handled as one batch (the server drains its queue the same way).
    batch_window: float = 0.0002

    def validate(self) -> None:
        if not 0 <= self.latency_min <= self.latency_max:
            raise ValueError(
                f"need 0 <= latency_min <= latency_max, got {self.latency_min}, {self.latency_max}"
            )
        for name in ("loss", "duplicate", "reorder"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        if self.reorder_delay < 0 or self.fsync_latency < 0:
            raise ValueError("reorder_delay and fsync_latency must be >= 0")
        if self.fsync_sigma < 0 or self.batch_window < 0:
            raise ValueError("fsync_sigma and batch_window must be >= 0")


@dataclass(slots=True, kw_only=True)
class SimConfig:
    protocol: str = "raft"
    # The service the clients use; None: the protocol's default (core/service.py).
    service: str | None = None
    node_ids: tuple[str, ...] = ("n1", "n2", "n3")
    seed: int = 0
    duration: float = 10.0  # virtual seconds of workload + faults
    # After duration: heal everything, restart crashed, resume paused, stop clients,
    # run `settle` more seconds, then the final checks.
    settle: float = 5.0
    clients: int = 0
    keys: int = 3  # key space k0 .. k{keys-1}
    nemesis: tuple[str, ...] = ()  # subset of NEMESIS_KINDS
    nemesis_interval: tuple[float, float] = (0.5, 2.0)  # seconds between random faults
    bugs: frozenset[str] = frozenset()
    # Protocol options, merged over spec.default_options; the sim adds "bugs".
    options: dict[str, Any] = field(default_factory=dict)
    # Values of the protocol's own flags (ProtocolSpec.flags) by key; missing ones take
    # their defaults.  Option flags also become options (explicit ``options`` win).
    flags: dict[str, Any] = field(default_factory=dict)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    trace_path: str | None = None  # stream the trace as JSON lines here
    history_path: str | None = None
    check_every_step: bool = True
    # Check the client history with the linearizability checker (the service's model) at the end of
    # run(); after this many seconds of searching the answer is None ("unknown").
    check_linearizability: bool = True
    linearizability_timeout: float = DEFAULT_LINEARIZABILITY_TIMEOUT
    op_timeout: float = 1.0  # per attempt
    op_deadline: float = 3.0  # per op overall; then "unknown" (or "fail", see workload)
    runtime: str = "random"  # one of RUNTIMES

    def validate(self) -> None:
        if not self.node_ids:
            raise ValueError("node_ids must name at least one node")
        if len(set(self.node_ids)) != len(self.node_ids):
            raise ValueError(f"node_ids has duplicates: {self.node_ids}")
        unknown = [k for k in self.nemesis if k not in NEMESIS_KINDS]
        if unknown:
            raise ValueError(
                f"unknown nemesis kind(s) {', '.join(unknown)}; valid: {', '.join(NEMESIS_KINDS)}"
            )
        lo, hi = self.nemesis_interval
        if not 0 < lo <= hi:
            raise ValueError(f"nemesis_interval must satisfy 0 < lo <= hi, got {lo}, {hi}")
        if self.duration < 0 or self.settle < 0:
            raise ValueError("duration and settle must be >= 0")
        if self.clients < 0 or self.keys < 1:
            raise ValueError("clients must be >= 0 and keys >= 1")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {self.runtime!r}; valid: {', '.join(RUNTIMES)}")
        if self.op_timeout <= 0 or self.op_deadline <= 0:
            raise ValueError("op_timeout and op_deadline must be > 0")
        self.network.validate()
