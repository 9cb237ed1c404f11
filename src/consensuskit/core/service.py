"""Services: one client API each, and what the platform needs from one.

A service is what clients see: its operations, the deterministic state machine that
executes them, the model its histories are checked against, the workload the simulator
drives it with, and its front doors (HTTP routes, client methods, CLI verbs).  Core knows
no service by name; ``consensuskit.catalog`` lists them.

Rules this module owns:
  * operations: ``kinds`` are the operation names, ``read_kinds`` those that change
    nothing (a protocol may serve them without a log entry); ``validate(op)`` raises
    ValueError with one line naming what is wrong (an unknown kind names the valid ones);
    an op is a registered message (``core.client.Op`` for kv-shaped ops or
    ``ServiceOp``), so it is msgpack-encodable and travels in log entries as is;
  * the state machine (``StateMachine`` below) is deterministic: the same commands in the
    same order give the same results, snapshots and digests on every replica.  It answers
    ``is_read``: a protocol asks the op (``op.is_read()``), a state machine refuses to
    serve a write kind from ``read`` whatever the op says; a service whose protocol keeps
    the state itself (commit participants, shards) gives ``ProtocolKeepsState``, which
    refuses to execute;
  * a *log* service (``log=True``) runs on every log protocol, which receives the
    service's state machine through its factory; a protocol that is not a log brings its
    own services (``ProtocolSpec.services``);
  * a service may run more than its HTTP routes on a node of the real server (another
    listener such as a gRPC port, background tasks): ``listeners`` names an
    ``async def start(api, listen) -> close`` run once the node runs, where ``listen`` maps
    each name of ``ports`` to the address configured for it (the config's ``[listen]``
    table; ``consensuskit up`` gives each node one port per name, just above the peer
    ports); ``close`` is an ``async def close()`` the server awaits before it stops;
  * in a simulation a service may have a monitor (``make_monitor(config)``, set by the
    catalog, like a protocol's): duck-typed ``start(sim)``, ``report(sim) -> dict``,
    ``failures(sim) -> list[str]`` as a protocol's monitor, and optionally
    ``make_state_machine(node_id)``, the state machine a log protocol's node gets at each
    start of that run (the service's own, which the monitor may watch or instrument).  It
    is where a service runs what its real server runs beside the log (etcd's lessor) and
    checks what only the service knows; ``bugs`` are the service's own bug knobs,
    accepted by ``--bug`` beside the protocol's and read by its monitor from the config;
  * the checker model, the HTTP routes, the client methods and the CLI verbs live above
    core, so the spec names them lazily: ``model`` is a model name for
    ``check.linearizability.get_model`` or a callable returning a model (None: the
    service's histories are not checked for linearizability); ``http``, ``client`` and
    ``cli`` are ``"module:attribute"`` references resolved by the layer that needs them
    (``resolve``), so no package imports another above it.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from consensuskit.core.client import ClientRequest, ServiceOp

# The service a protocol serves when nobody names one (every log protocol serves it).
DEFAULT_SERVICE = "kv"


class StateMachine(Protocol):
    """Applied in log order, identically on every replica.

    ``apply`` must be deterministic: same sequence of commands -> same results and state.
    ``snapshot`` returns an immutable, codec-encodable value; ``restore`` replaces the
    whole state with one.  ``len()`` is the number of entries a snapshot copies (what
    a protocol weighs when it decides to compact its log).
    """

    def apply(self, command: ClientRequest) -> Any: ...

    def read(self, request: ClientRequest) -> Any:
        """Serve a read-only command from the current state without logging it."""
        ...

    def snapshot(self) -> Any: ...

    def restore(self, snapshot: Any) -> None: ...

    def digest(self) -> Any:
        """A comparable summary of the whole state (for convergence checks)."""
        ...

    def __len__(self) -> int: ...


class ProtocolKeepsState:
    """The state machine of a service whose protocol keeps the state itself (commit
    participants, shards): it exists for the platform's interfaces, holds nothing and
    refuses to execute, naming who does in ``refusal``."""

    refusal = "this service's protocol executes its operations itself"

    def apply(self, command: ClientRequest) -> Any:
        raise ValueError(self.refusal)

    def read(self, request: ClientRequest) -> Any:
        raise ValueError(self.refusal)

    def snapshot(self) -> Any:
        return ()

    def restore(self, snapshot: Any) -> None:
        pass

    def digest(self) -> Any:
        return ()

    def __len__(self) -> int:
        return 0


class Workload(Protocol):
    """One simulated client's choice of operations (one instance per client).

    ``next_op(rng)`` picks the next operation with the client's own seeded rng;
    ``learn(op, result)`` sees the result of each op that succeeded (e.g. a kv client
    remembers versions for its compare-and-swaps).  Values written should be unique so
    a history says which write a read observed.  A workload that paces itself (an etcd
    client keeps its leases alive by their TTL) has an attribute ``now``: the simulator
    sets it to the virtual time, in seconds, before each ``next_op`` and ``learn``; its
    ``next_op`` may return None to stay idle until its attribute ``wake_at`` (a time).
    """

    def next_op(self, rng: random.Random) -> Any: ...

    def learn(self, op: Any, result: Any) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec:
    name: str
    description: str
    kinds: tuple[str, ...]
    read_kinds: tuple[str, ...]
    # make_state_machine() -> a fresh, empty StateMachine.
    make_state_machine: Callable[[], StateMachine]
    # make_workload(client_index, keys) -> a Workload for one simulated client.
    make_workload: Callable[[int, int], Workload]
    # validate(op) raises ValueError (one line); None: ``check_kind`` only.
    validate: Callable[[Any], None] | None = None
    # make_op(kind, key, value) -> the op; None: a ServiceOp marked read per read_kinds.
    make_op: Callable[[str, str, Any], Any] | None = None
    # The linearizability model: a name, a callable returning a model, or None.
    model: str | Callable[[], Any] | None = None
    log: bool = True
    # "module:attribute" references (see the module rules); None: the service has none.
    # An object with mount(api, router), adding the service's routes to a node's HTTP app,
    # and optionally fast_site(runner, host, port, api, limits=...): a lean plain-text front,
    # and max_body_bytes(config): the largest body its routes read, when over a value's.
    http: str | None = None
    client: str | None = None  # a class built with a consensuskit.client.Client: its methods
    cli: str | None = None  # a typer app of the service's verbs, added under its name
    # "module:attribute" of ``async def start(api, listen) -> close`` (see the module rules).
    listeners: str | None = None
    ports: tuple[str, ...] = ()  # names of the extra per-node ports ``listen`` may map
    # False: the server never fsyncs in its loop thread (its ``inline_sync_bytes`` is 0)
    # for this service: a front that takes one request per loop wake-up (grpcio's asyncio
    # server) gets nothing in while an inline fsync blocks the loop, so each write would
    # make a batch, and a sync, of its own.
    sync_inline: bool = True
    # A command line to try against a running cluster, printed by ``consensuskit up``:
    # ``{endpoints}`` (the HTTP endpoints, comma-separated), ``{url}`` (the first one) and
    # ``{NAME}`` (a listener's addresses) are filled in; "" prints none.
    example: str = ""
    # The simulator's service monitor (see the module rules), set by the catalog.
    make_monitor: Callable[[Any], Any] | None = None
    bugs: tuple[str, ...] = ()  # the service's own bug knobs (see the module rules)

    def check_kind(self, kind: str) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown {self.name} operation {kind!r}; valid: {', '.join(self.kinds)}")

    def op(self, kind: str, key: str = "", value: Any = None) -> Any:
        """A validated op of this service."""
        self.check_kind(kind)
        if self.make_op is not None:
            built = self.make_op(kind, key, value)
        else:
            built = ServiceOp(kind=kind, key=key, value=value, read=kind in self.read_kinds)
        self.check(built)
        return built

    def check(self, op: Any) -> None:
        """Raise ValueError (one line) unless ``op`` is a valid op of this service."""
        self.check_kind(getattr(op, "kind", None))  # type: ignore[arg-type]
        if op.is_read() != (op.kind in self.read_kinds):
            raise ValueError(f"{self.name} operation {op.kind!r} is marked read={op.is_read()}")
        if self.validate is not None:
            self.validate(op)


def resolve(reference: str) -> Any:
    """The object a ``"module:attribute"`` reference names (ImportError, AttributeError)."""
    module, _, attribute = reference.partition(":")
    if not module or not attribute:
        raise ValueError(f"expected MODULE:ATTRIBUTE, got {reference!r}")
    obj: Any = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


class ServiceRegistry:
    """Name -> service spec; one per program, built explicitly (like the protocols')."""

    def __init__(self) -> None:
        self._specs: dict[str, ServiceSpec] = {}

    def add(self, spec: ServiceSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"service {spec.name!r} registered twice")
        self._specs[spec.name] = spec

    def get(self, name: str) -> ServiceSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"unknown service {name!r}; valid: {', '.join(sorted(self._specs))}") from None

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __bool__(self) -> bool:
        return bool(self._specs)
