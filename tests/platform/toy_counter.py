"""A toy protocol with its own toy service, defined outside the package, as the
"how to add a protocol" walk-through in docs/architecture.md builds one.

The protocol ("counter-primary") is not a log: its first member is the primary forever;
the primary executes each command on its state machine, writes the state to storage and
answers (the runtime releases the answer only after the write is durable); the others
answer ``not-leader`` naming the primary.  A crash loses nothing acknowledged: the
primary restores its state from storage when it starts.

The service ("counter") has two operations: ``incr`` (adds ``value``, default 1, to the
counter named by the key and answers the new total) and ``read`` (answers the total).
Its state machine gets exactly-once client sessions from ``statemachines/sessioned.py``;
its model is a tiny sequential counter per key; its HTTP routes are
``POST /v1/counter/KEY`` (incr) and ``GET /v1/counter/KEY`` (read).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

import typer

from consensuskit.catalog import Catalog, builtin_catalog
from consensuskit.core.capabilities import LEADER, NodeStatus
from consensuskit.core.client import NOT_LEADER, ClientRequest, ClientResponse
from consensuskit.core.env import Env
from consensuskit.core.registry import ProtocolFlag, ProtocolSpec, Registry
from consensuskit.core.service import ServiceSpec
from consensuskit.statemachines.sessioned import Sessioned
from consensuskit.statemachines.sessions import BAD_COMMAND, refusal

STATE_KEY = "counter/state"
KINDS = ("incr", "read")
READS = ("read",)


# ---------------------------------------------------------------------- the service
class Counters:
    """The service's executor: named counters, all starting at 0."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}

    def execute(self, op: Any) -> Any:
        if op.kind == "read":
            return {"total": self.totals.get(op.key, 0)}
        step = op.value if type(op.value) is int else 1
        total = self.totals.get(op.key, 0) + step
        self.totals[op.key] = total
        return {"total": total}

    def snapshot(self) -> Any:
        return tuple(sorted(self.totals.items()))

    def restore(self, snapshot: Any) -> None:
        self.totals = {str(k): int(v) for k, v in snapshot}

    def digest(self) -> Any:
        return self.snapshot()

    def __len__(self) -> int:
        return len(self.totals)


def make_state_machine() -> Sessioned:
    return Sessioned(Counters(), KINDS, READS)


class CounterWorkload:
    """Half increments by 1..3, half reads, over ``keys`` counters."""

    def __init__(self, index: int, keys: int) -> None:
        self.keys = keys

    def next_op(self, rng: random.Random) -> Any:
        key = f"c{rng.randrange(self.keys)}"
        if rng.random() < 0.5:
            return SERVICE.op("read", key)
        return SERVICE.op("incr", key, rng.randint(1, 3))

    def learn(self, op: Any, result: Any) -> None:
        pass


class CounterModel:
    """Sequential spec: one integer per key (check/linearizability/models.py's interface)."""

    name = "counter"

    def init(self) -> Hashable:
        return 0

    def validate(self, call: Any) -> None:
        if call.kind not in KINDS:
            from consensuskit.check.linearizability import ModelError

            raise ModelError(f"the counter model has no {call.kind!r} operation")

    def step(self, state: Any, call: Any, output: Any) -> tuple[bool, Hashable]:
        from consensuskit.check.linearizability import UNKNOWN

        after = state + (call.value if type(call.value) is int else 1) if call.kind == "incr" else state
        if output is UNKNOWN:
            return True, after
        return output.get("total") == after, after

    def partition(self, ops: list[Any]) -> list[list[Any]]:
        groups: dict[Any, list[Any]] = defaultdict(list)
        for op in ops:
            groups[op.input.key].append(op)
        return list(groups.values())

    def describe_operation(self, call: Any, output: Any) -> str:
        return f"{call.describe()} -> {output!r}"

    def describe_state(self, state: Any) -> str:
        return str(state)


def _validate(op: Any) -> None:
    if op.kind == "incr" and op.value is not None and (type(op.value) is not int or op.value < 1):
        raise ValueError(f"incr takes a positive integer, got {op.value!r}")


SERVICE = ServiceSpec(
    name="counter",
    description="named counters: incr and read",
    kinds=KINDS,
    read_kinds=READS,
    make_state_machine=make_state_machine,
    make_workload=CounterWorkload,
    validate=_validate,
    model=CounterModel,
    log=False,
    http="tests.platform.toy_counter_http:ROUTES",
    client="tests.platform.toy_counter_http:CounterClient",
    cli="tests.platform.toy_counter_http:CLI",
)


# ---------------------------------------------------------------------- the protocol
class CounterPrimaryNode:
    def __init__(self, node_id: str, env: Env, members: Sequence[str], options: dict[str, Any]) -> None:
        self.id = node_id
        self.env = env
        self.members = tuple(members)
        # --primary-index I (a ProtocolFlag that is an option): which member is primary.
        self.primary = self.members[int(options.get("primary_index", 0)) % len(self.members)]
        self.role = "leader" if node_id == self.primary else "follower"
        self.leader = self.primary
        self.sm = make_state_machine()
        self.applied = 0
        saved = env.storage.get(STATE_KEY)
        if saved is not None:
            self.applied, snapshot = saved
            self.sm.restore(snapshot)

    def on_start(self) -> None:
        self.env.record("role", role=self.role)

    def on_timer(self, key: str) -> None:
        pass

    def on_message(self, src: str, msg: Any) -> None:
        pass

    def on_request(self, request: ClientRequest) -> None:
        env = self.env
        if self.role != "leader":
            env.deliver(
                ClientResponse(
                    client_id=request.client_id,
                    seq=request.seq,
                    ok=False,
                    error=NOT_LEADER,
                    leader_hint=self.primary,
                )
            )
            return
        if request.op.is_read():
            try:
                result = self.sm.read(request)
            except ValueError:  # a write kind marked read: refused, nothing changed
                result = BAD_COMMAND
        else:
            result = self.sm.apply(request)
            self.applied += 1
            env.storage.put(STATE_KEY, (self.applied, self.sm.snapshot()))
        error = refusal(result)
        env.deliver(
            ClientResponse(
                client_id=request.client_id,
                seq=request.seq,
                ok=error is None,
                result=None if error else result,
                error=error,
                index=self.applied,
            )
        )

    # -- capabilities (core/capabilities.py): what the nemesis, metrics and server read --
    def node_status(self) -> NodeStatus:
        return NodeStatus(
            id=self.id,
            role=self.role,
            leader=self.primary,
            generation_name="generation",
            generation=0,  # one primary forever: nothing to number
            details={"applied": self.applied},
        )

    def is_leader(self) -> bool:
        return self.role == LEADER

    def current_leader(self) -> str | None:
        return self.primary


def _validate_options(options: dict[str, Any]) -> None:
    index = options.get("primary_index", 0)
    if not isinstance(index, int) or index < 0:
        raise ValueError(f"primary_index must be an int >= 0, got {index!r}")


PROTOCOL = ProtocolSpec(
    name="counter-primary",
    description="toy: a fixed primary serving the counter service",
    make_node=CounterPrimaryNode,
    services=("counter",),
    validate_options=_validate_options,
    flags=(
        ProtocolFlag(name="primary-index", kind=int, default=0, help="Which member is the primary."),
        ProtocolFlag(
            name="crash-primary-at",
            kind=float,
            default=-1.0,
            help="The monitor crashes the primary at this virtual time (-1: never).",
            option=False,
        ),
        ProtocolFlag(
            name="need-ok",
            kind=int,
            default=0,
            help="The run fails unless this many operations completed.",
            option=False,
        ),
        ProtocolFlag(name="style", kind=str, default="plain", help="Unused.", choices=("plain", "fancy")),
        ProtocolFlag(name="loud", kind=bool, default=False, help="Unused.", option=False),
    ),
)


class CrashMonitor:
    """The toy's monitor: crashes the primary when the flag says, and reports it."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.crashed_at: float | None = None

    def start(self, sim: Any) -> None:
        at = sim.flags["crash_primary_at"]
        if at >= 0:
            primary = sim.node_ids[sim.options.get("primary_index", 0) % len(sim.node_ids)]

            def crash() -> None:
                self.crashed_at = sim.now
                sim.crash(primary)

            sim.schedule(at, crash, "monitor: crash the primary")

    def report(self, sim: Any) -> dict[str, Any]:
        return {"crashed_at": self.crashed_at, "ok_ops": sim.history.counts().get("ok", 0)}

    def failures(self, sim: Any) -> list[str]:
        ok = sim.history.counts().get("ok", 0)
        need = sim.flags["need_ok"]
        return [f"only {ok} operations completed, {need} needed"] if ok < need else []


def hello(name: str = "world") -> None:
    """A family's command: consensuskit toy-hello (mounted from the catalog)."""
    print(f"hello {name}")


toy_app = typer.Typer(help="The toy family's verbs.", no_args_is_help=True)


@toy_app.command("count")
def toy_count(n: int = 3) -> None:
    """Print 1..N."""
    print(" ".join(str(i) for i in range(1, n + 1)))


def primary_crash(run: Any) -> None:
    """Scenario script: an acknowledged increment survives a crash of the primary."""
    sim = run.simulation(("p", "b1", "b2"), clients=0)
    first = sim.submit(SERVICE.op("incr", "x", 5))
    sim.run_until_true(lambda: first.done, 5.0)
    run.expect(first.result == {"total": 5}, "the primary answers the increment")
    sim.crash("p")
    sim.restart("p")
    read = sim.submit(SERVICE.op("read", "x"))
    sim.run_until_true(lambda: read.done, 5.0)
    run.expect(read.result == {"total": 5}, "the increment survives the primary's crash")


def scenarios() -> list[Any]:
    from consensuskit.scenarios import Scenario  # when asked for: scenarios import the simulator

    return [
        Scenario(
            id="toy-primary-crash",
            title="primary crash",
            protocol="counter-primary",
            description="an acknowledged increment survives a crash of the primary",
            script=primary_crash,
        )
    ]


def catalog() -> Catalog:
    """The catalog plug-in (``CONSENSUSKIT_CATALOG=tests.platform.toy_counter:catalog``):
    the built-in catalog plus the toy protocol, its scenario and its service."""
    cat = builtin_catalog()
    cat.add_protocol(
        PROTOCOL,
        family="toy",
        readme="tests/platform/toy_counter.py",
        scenarios=scenarios,
        monitor=CrashMonitor,
    )
    cat.add_service(SERVICE)
    cat.add_command("toy-hello", "tests.platform.toy_counter:hello")
    cat.add_command("toy", "tests.platform.toy_counter:toy_app")
    return cat


def registry() -> Registry:
    """What the simulator and the server run: the plug-in catalog's registry."""
    return catalog().registry()
