"""One transcript harness over the simulator, for every catalog protocol.

The simulator runs in a scripted mode: no nemesis, no workload, seed 0, zero network
latency and zero sync time, and a message filter that *holds* every node-to-node
message.  Nothing moves unless a command says so:

  * a held message is delivered only by ``deliver`` or ``stabilize`` (then it meets the
    partition model like any other message), or removed by ``drop``;
  * virtual time stands still: a timer fires only by ``tick`` / ``tick-heartbeat`` /
    ``fire`` (at the current time), or when ``elapse`` moves the clock past it;
  * storage syncs complete within the command that caused them, so the durability
    barrier still orders every write before the messages that depend on it;
  * the protocol's checker runs after every step; a violation is printed, not raised.

What a command prints comes from the simulator's trace, one line per event:
``n1->n2 <message summary>`` for a delivery, ``n1->n2 <summary> dropped (<reason>)``,
``n1 <record kind> key=value ...`` for what a node recorded (role changes, commits),
``n1->c1 ok ...`` / ``n1->c1 error=...`` for client answers, ``n1 timer <key>`` for a
timer.  Messages print by their own ``summary()``; ``log`` and ``state`` use the small
per-protocol table in ``formatters.py``.  Nothing here names a protocol.

Commands (the file format is in ``datadriven.py``):

  add-nodes N [protocol=P] [bugs=(a,b)] [seed=S] [option=value ...]
  campaign ID                       start an election / phase 1 (the node's campaign())
  propose ID OP... [client=C] [seq=N] [consistency=L]   a client request: put k v | k=v | get k
                                    | delete k | cas k old new (seq=N: a retry of request N)
  call ID METHOD [args...] [k=v]    any public method of the node, as an admin input
  deliver [from=A] [to=B] [type=T] [count=N]   deliver held messages, one round
  drop [from=A] [to=B] [type=T] [count=N]      lose held messages
  pending                           list held messages
  stabilize [ID...]                 deliver rounds until no message is held
  partition A B | C D               cut the links between groups; heal
  crash ID | restart ID
  wipe ID                           crash, lose every byte of storage, restart rejoining
  tick ID [N]                       fire the node's earliest armed timer, N times
  tick-heartbeat ID | fire ID KEY   fire the "heartbeat" timer / a named one
  elapse SECONDS                    let virtual time pass; due timers fire
  timers ID                         the node's armed timers
  log [ID...] | state [ID...] | status ID [fields=(a,b)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from consensuskit.catalog import default_registry
from consensuskit.core.client import (
    VIA_ADMIN,
    VIA_CERTIFICATE,
    VIA_TOKEN,
    ClientRequest,
    ClientResponse,
    Op,
    Principal,
)
from consensuskit.core.messages import message_field_names
from consensuskit.core.registry import Registry
from consensuskit.sim import InvariantViolation, NetworkConfig, SimConfig, Simulation

from .datadriven import Case, DataDrivenError
from .formatters import HIDDEN_RECORDS, format_log, format_state

MAX_ROUNDS = 200  # stabilize gives up after this many delivery rounds

# Trace events that never print: the held/released bookkeeping of this harness, syncs,
# and the client side of a request (the command itself says what was asked).
_SILENT = {"send", "hold", "release", "sync", "invoke", "request", "sched", "fault", "phase", "complete"}


def parse_value(text: str) -> Any:
    """Option values: ints, floats, true/false, none, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def fmt(value: Any) -> str:
    """A field value in canonical text: stable, compact, no Python reprs of None."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(fmt(v) for v in value) + ")"
    if isinstance(value, (set, frozenset)):
        return "(" + ",".join(sorted(fmt(v) for v in value)) + ")"
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}:{fmt(v)}" for k, v in value.items()) + "}"
    summary = getattr(value, "summary", None)
    if callable(summary):
        return str(summary())
    return str(value)


def summarize(msg: Any) -> str:
    summary = getattr(msg, "summary", None)
    if callable(summary):
        return str(summary())
    fields = message_field_names(type(msg))
    if fields:
        return f"{type(msg).__name__} " + " ".join(f"{k}={fmt(getattr(msg, k))}" for k in fields)
    return type(msg).__name__


def format_response(node: str, r: ClientResponse) -> str:
    if r.ok:
        out = f"{node}->{r.client_id} ok seq={r.seq} result={fmt(r.result)}"
        return out + (f" index={r.index}" if r.index else "")
    hint = f" hint={r.leader_hint}" if r.leader_hint else ""
    return f"{node}->{r.client_id} error={r.error} seq={r.seq}{hint}"


def parse_principal(text: str | None) -> Principal | None:
    """``as=`` of propose: who the edge authenticated; ``admin``, ``NAME:certificate`` or
    ``NAME:token:REV`` (none given: nobody)."""
    if text is None:
        return None
    if text == "admin":
        return Principal(name="", via=VIA_ADMIN)
    name, _, rest = text.partition(":")
    via, _, rev = rest.partition(":")
    if via not in (VIA_CERTIFICATE, VIA_TOKEN) or (via == VIA_TOKEN) != rev.isdigit():
        raise DataDrivenError(f"bad as={text!r}; valid: admin, NAME:certificate, NAME:token:REV")
    return Principal(name=name, via=via, rev=int(rev or 0))


def parse_op(words: list[str]) -> Op:
    if len(words) == 1 and "=" in words[0]:
        key, _, value = words[0].partition("=")
        return Op(kind="put", key=key, value=parse_value(value))
    if not words:
        raise DataDrivenError("propose needs an operation: put k v | k=v | get k | delete k | cas k old new")
    kind, rest = words[0], words[1:]
    if kind == "auth" and rest:  # auth ACTION ARG...: users, roles, enable (statemachines/auth.py)
        return Op(kind="auth", key=rest[0], value=tuple(parse_value(w) for w in rest[1:]))
    shapes = {"put": 2, "get": 1, "delete": 1, "cas": 3, "list": 1}
    if kind not in shapes or len(rest) != shapes[kind]:
        raise DataDrivenError(
            f"bad operation {' '.join(words)!r}; valid: put k v, k=v, get k, delete k, cas k old new, list p"
        )
    if kind == "put":
        return Op(kind="put", key=rest[0], value=parse_value(rest[1]))
    if kind == "cas":
        expected = parse_value(rest[1])
        return Op(kind="cas", key=rest[0], expected=expected, value=parse_value(rest[2]))
    return Op(kind=kind, key=rest[0])


class Harness:
    """Holds one simulation; ``handle(case)`` runs one command and returns its output."""

    def __init__(self, registry: Registry | None = None, protocol: str = "raft") -> None:
        self.registry = registry or default_registry()
        self.default_protocol = protocol
        self.sim: Simulation | None = None
        self.protocol = protocol
        self._clients = 0
        self._client_seq: dict[str, int] = {}
        self._mark = 0
        self._responses = 0
        self._partial: list[str] = []
        self._commands: dict[str, Callable[[Case], list[str]]] = {
            "add-nodes": self._add_nodes,
            "campaign": self._campaign,
            "propose": self._propose,
            "call": self._call,
            "deliver": self._deliver,
            "drop": self._drop,
            "pending": self._pending,
            "stabilize": self._stabilize,
            "partition": self._partition,
            "heal": self._heal,
            "crash": self._crash,
            "restart": self._restart,
            "wipe": self._wipe,
            "tick": self._tick,
            "tick-heartbeat": self._tick_heartbeat,
            "fire": self._fire,
            "elapse": self._elapse,
            "timers": self._timers,
            "log": self._log,
            "state": self._state,
            "status": self._status,
        }

    # ------------------------------------------------------------------ plumbing
    def handle(self, case: Case) -> str:
        fn = self._commands.get(case.command)
        if fn is None:
            raise DataDrivenError(
                f"{case.pos}: unknown command {case.command!r}; valid: {', '.join(sorted(self._commands))}"
            )
        if self.sim is None and case.command != "add-nodes":
            raise DataDrivenError(f"{case.pos}: add-nodes must come first")
        self._partial = []
        try:
            lines = fn(case)
        except InvariantViolation as exc:
            # The simulator traced the violation; what ran before it stays printed.
            lines = [*self._partial, *self._events()]
            if not any(line.startswith("VIOLATION") for line in lines):
                lines.append(f"VIOLATION {exc.name}: {exc.detail}")
        except (KeyError, ValueError, RuntimeError) as exc:
            if isinstance(exc, DataDrivenError):
                raise
            lines = [*self._partial, *self._events(), f"error: {exc.args[0] if exc.args else exc}"]
        return "\n".join(lines) + ("\n" if lines else "")

    @property
    def s(self) -> Simulation:
        assert self.sim is not None
        return self.sim

    def _node(self, node_id: str) -> Any:
        if node_id not in self.s.node_ids:
            raise KeyError(f"unknown node {node_id!r}; valid: {', '.join(self.s.node_ids)}")
        node = self.s.nodes[node_id]
        if node is None:
            raise RuntimeError(f"{node_id} is crashed")
        return node

    def _settle_now(self) -> None:
        """Run every event due now: deliveries just released, syncs, client answers.
        Messages they send are held again; later timers stay queued."""
        self.s.run_until(self.s.now)

    def _events(self) -> list[str]:
        """The trace since the last call, one line per event worth printing."""
        trace = self.s.trace
        n = trace.count - self._mark
        self._mark = trace.count
        if n <= 0:
            return []
        records = trace.tail_records(n)
        if len(records) < n:
            raise RuntimeError(f"trace kept {len(records)} of {n} records: run smaller steps")
        responses = self.s.responses
        hidden = HIDDEN_RECORDS.get(self.protocol, ())
        out: list[str] = []
        for rec in records:
            ev = rec[1]
            if ev in _SILENT:
                continue
            if ev == "deliver":
                out.append(f"{rec[2]}->{rec[3]} {summarize(rec[5])}")
            elif ev == "drop":
                out.append(f"{rec[2]}->{rec[3]} {summarize(rec[5])} dropped ({rec[6]})")
            elif ev == "rec":
                if rec[3] not in hidden:
                    out.append(self._record(rec[2], rec[3], rec[4]))
            elif ev == "timer":
                out.append(f"{rec[2]} timer {rec[3]}")
            elif ev == "response":
                _, node, response = responses[self._responses]
                self._responses += 1
                out.append(format_response(node, response))
            elif ev == "start":
                if rec[3] > 1:  # a restart; first starts are implied by add-nodes
                    out.append(f"{rec[2]} restarts (incarnation {rec[3]})")
            elif ev == "late":
                continue
            elif ev == "violation":
                out.append(f"VIOLATION {rec[2]}: {rec[3]}")
            else:
                out.append(f"{ev} {' '.join(fmt(f) for f in rec[2:])}")
        return out

    @staticmethod
    def _record(node: str, kind: str, fields: dict[str, Any]) -> str:
        # "role" with a field "role" reads better as "n1 role=leader term=2".
        head = f"{node}" if kind in fields else f"{node} {kind}"
        parts = [f"{k}={fmt(v)}" for k, v in fields.items() if k != "delays"]
        return " ".join([head, *parts])

    def _held(self, case: Case) -> Callable[[str, str, Any], bool]:
        src = case.get("from")
        dst = case.get("to")
        kind = case.get("type")
        limit = int(case.get("count") or 0)
        taken = [0]

        def pred(s: str, d: str, msg: Any) -> bool:
            if (src is not None and s != src) or (dst is not None and d != dst):
                return False
            if kind is not None and type(msg).__name__ != kind and not summarize(msg).startswith(kind):
                return False
            if limit and taken[0] >= limit:
                return False
            taken[0] += 1
            return True

        return pred

    # ------------------------------------------------------------------ set-up
    def _add_nodes(self, case: Case) -> list[str]:
        if self.sim is not None:
            raise DataDrivenError(f"{case.pos}: add-nodes may run once per file")
        pos = case.positional()
        if len(pos) != 1 or not pos[0].isdigit():
            raise DataDrivenError(f"{case.pos}: add-nodes N [protocol=P] [bugs=(a,b)] [option=value ...]")
        n = int(pos[0])
        options: dict[str, Any] = {}
        protocol = self.default_protocol
        bugs: frozenset[str] = frozenset()
        seed = 0
        for key, vals in case.keyed().items():
            if key == "protocol":
                protocol = vals[0]
            elif key == "bugs":
                bugs = frozenset(vals)
            elif key == "seed":
                seed = int(vals[0])
            elif case.listed(key):  # key=(a,b): a tuple, even of one element
                options[key] = tuple(parse_value(v) for v in vals)
            else:
                options[key] = parse_value(vals[0])
        self.protocol = protocol
        network = NetworkConfig(latency_min=0.0, latency_max=0.0, fsync_latency=0.0)
        config = SimConfig(
            protocol=protocol,
            node_ids=tuple(f"n{i}" for i in range(1, n + 1)),
            seed=seed,
            bugs=bugs,
            options=options,
            network=network,
            check_linearizability=False,
        )
        for field_name, value in (("runtime", "unbatched"),):
            # Pin the simulator to one input at a time where it offers a choice.
            if hasattr(config, field_name):
                setattr(config, field_name, value)
        spec = self.registry.get(protocol)
        if spec.validate_options is not None:
            spec.validate_options({**spec.default_options, **options, "bugs": bugs})
        self.sim = Simulation(config, self.registry)
        nodes = set(config.node_ids)
        self.sim.add_filter(lambda src, dst, msg: "hold" if src in nodes and dst in nodes else None)
        self._mark = 0
        self._settle_now()
        return self._events()

    # ------------------------------------------------------------------ inputs
    def _invoke(self, node_id: str, fn: Callable[[Any], Any], label: str) -> Any:
        self._node(node_id)
        result = self.s.invoke(node_id, fn, label)
        self._settle_now()
        return result

    def _campaign(self, case: Case) -> list[str]:
        (node_id,) = self._ids(case, 1)
        node = self._node(node_id)
        if not callable(getattr(node, "campaign", None)):
            raise DataDrivenError(f"{case.pos}: {self.protocol} has no campaign (no leader election)")
        self._invoke(node_id, lambda n: n.campaign(), f"campaign {node_id}")
        return self._events()

    def _propose(self, case: Case) -> list[str]:
        words = case.positional()
        # key=value without a known option name is the put shorthand.
        named = ("client", "consistency", "as", "seq")
        extra = [f"{a.key}={a.vals[0]}" for a in case.args if a.vals and a.key not in named]
        if len(words) < 1:
            raise DataDrivenError(f"{case.pos}: propose ID OP...")
        node_id = words[0]
        self._node(node_id)
        op = parse_op(words[1:] + extra)
        client = case.get("client")
        if client is None:
            self._clients += 1
            client = f"c{self._clients}"
        if case.get("seq") is not None:  # a retry: the same client and sequence number
            seq = int(case.get("seq"))
        else:
            seq = self._client_seq.get(client, 0) + 1
            self._client_seq[client] = seq
        request = ClientRequest(
            client_id=client,
            seq=seq,
            op=op,
            consistency=case.get("consistency"),
            principal=parse_principal(case.get("as")),
        )
        self.s.send_request(node_id, request)
        self._settle_now()
        return self._events()

    def _call(self, case: Case) -> list[str]:
        words = case.positional()
        if len(words) < 2 or words[1].startswith("_"):
            raise DataDrivenError(f"{case.pos}: call ID METHOD [args...] [key=value ...] (public methods)")
        node_id, method = words[0], words[1]
        node = self._node(node_id)
        fn = getattr(node, method, None)
        if not callable(fn):
            raise DataDrivenError(f"{case.pos}: {type(node).__name__} has no method {method!r}")
        args = [parse_value(w) for w in words[2:]]
        kwargs = {k: parse_value(v[0]) for k, v in case.keyed().items()}
        label = f"call {node_id} {method}"
        result = self._invoke(node_id, lambda n: getattr(n, method)(*args, **kwargs), label)
        out = self._events()
        if result is not None:
            out.append(f"-> {fmt(result)}")
        return out

    # ------------------------------------------------------------------ network
    def _deliver(self, case: Case) -> list[str]:
        self.s.release_held(self._held(case))
        self._settle_now()
        return self._events()

    def _drop(self, case: Case) -> list[str]:
        pred = self._held(case)
        keep, out = [], []
        for item in self.s.held:
            src, dst, _, msg = item
            if pred(src, dst, msg):
                out.append(f"{src}->{dst} {summarize(msg)} dropped")
            else:
                keep.append(item)
        self.s.held = keep
        return out

    def _pending(self, case: Case) -> list[str]:
        pred = self._held(case)
        return [f"{s}->{d} {summarize(m)}" for s, d, _, m in self.s.held if pred(s, d, m)]

    def _stabilize(self, case: Case) -> list[str]:
        only = set(case.positional())
        out = self._partial  # kept if a round ends in a violation
        for _ in range(MAX_ROUNDS):
            pred = (lambda s, d, m: s in only or d in only) if only else None
            if not any(pred is None or pred(s, d, m) for s, d, _, m in self.s.held):
                return out
            self.s.release_held(pred)
            self._settle_now()
            out.extend(self._events())
        out.append(f"error: not stable after {MAX_ROUNDS} rounds")
        return out

    def _partition(self, case: Case) -> list[str]:
        groups: list[list[str]] = [[]]
        for word in case.directive.split()[1:]:
            for i, part in enumerate(word.split("|")):
                if i:
                    groups.append([])
                if part:
                    groups[-1].append(part)
        groups = [g for g in groups if g]
        if len(groups) < 2:
            raise DataDrivenError(f"{case.pos}: partition A B | C D")
        self.s.partition(groups)
        return self._events()

    def _heal(self, case: Case) -> list[str]:
        self.s.heal()
        return self._events()

    # ------------------------------------------------------------------ faults
    def _crash(self, case: Case) -> list[str]:
        for node_id in self._ids(case):
            self.s.crash(node_id)
        return self._events()

    def _restart(self, case: Case) -> list[str]:
        for node_id in self._ids(case):
            self.s.restart(node_id)
            self._settle_now()
        return self._events()

    def _wipe(self, case: Case) -> list[str]:
        for node_id in self._ids(case):
            self.s.wipe(node_id)
            self._settle_now()
        return self._events()

    # ------------------------------------------------------------------ time
    def _armed(self, node_id: str) -> list[tuple[float, str]]:
        return self.s.armed_timers(node_id)

    def _fire_key(self, node_id: str, key: str) -> list[str]:
        env = self.s.env_of(node_id)
        if env is None:
            raise RuntimeError(f"{node_id} is crashed")
        if key not in {k for _, k in self._armed(node_id)}:
            armed = ", ".join(k for _, k in self._armed(node_id)) or "none"
            raise RuntimeError(f"{node_id} has no armed timer {key!r}; armed: {armed}")
        env.cancel_timer(key)  # the queued firing is replaced by this one
        out = self._events()
        self._invoke(node_id, lambda n: n.on_timer(key), f"fire {node_id} {key}")
        return [*out, f"{node_id} timer {key}", *self._events()]

    def _tick(self, case: Case) -> list[str]:
        words = case.positional()
        if not 1 <= len(words) <= 2:
            raise DataDrivenError(f"{case.pos}: tick ID [N]")
        node_id, n = words[0], int(words[1]) if len(words) == 2 else 1
        out: list[str] = []
        for _ in range(n):
            armed = self._armed(node_id)
            if not armed:
                out.append(f"{node_id} has no armed timer")
                break
            out.extend(self._fire_key(node_id, armed[0][1]))
        return out

    def _tick_heartbeat(self, case: Case) -> list[str]:
        (node_id,) = self._ids(case, 1)
        return self._fire_key(node_id, "heartbeat")

    def _fire(self, case: Case) -> list[str]:
        words = case.positional()
        if len(words) != 2:
            raise DataDrivenError(f"{case.pos}: fire ID KEY")
        return self._fire_key(words[0], words[1])

    def _elapse(self, case: Case) -> list[str]:
        words = case.positional()
        if len(words) != 1:
            raise DataDrivenError(f"{case.pos}: elapse SECONDS")
        self.s.run_until(self.s.now + float(words[0]))
        return self._events()

    def _timers(self, case: Case) -> list[str]:
        (node_id,) = self._ids(case, 1)
        self._node(node_id)
        now = self.s.now
        return [f"{key} in {fmt(round(t - now, 6))}s" for t, key in self._armed(node_id)]

    # ------------------------------------------------------------------ inspection
    def _ids(self, case: Case, exactly: int | None = None) -> list[str]:
        ids = case.positional() or (list(self.s.node_ids) if exactly is None else [])
        if exactly is not None and len(ids) != exactly:
            raise DataDrivenError(f"{case.pos}: {case.command} takes {exactly} node id(s)")
        for node_id in ids:
            if node_id not in self.s.node_ids:
                raise KeyError(f"unknown node {node_id!r}; valid: {', '.join(self.s.node_ids)}")
        return ids

    def _per_node(self, case: Case, fn: Callable[[str, Any, Any], Iterable[str]]) -> list[str]:
        ids = self._ids(case)
        out: list[str] = []
        for node_id in ids:
            node = self.s.nodes[node_id]
            prefix = f"{node_id}: " if len(ids) > 1 else ""
            if node is None:
                out.append(f"{prefix}crashed")
                continue
            lines = list(fn(self.protocol, node, self.s.storage_of(node_id)))
            if len(ids) > 1:
                out.append(f"{node_id}:")
                out.extend(f"  {line}" for line in lines)
            else:
                out.extend(lines)
        return out

    def _log(self, case: Case) -> list[str]:
        return self._per_node(case, format_log)

    def _state(self, case: Case) -> list[str]:
        return self._per_node(case, lambda _p, node, _s: format_state(node))

    def _status(self, case: Case) -> list[str]:
        (node_id,) = self._ids(case, 1)
        node = self._node(node_id)
        status = node.status() if callable(getattr(node, "status", None)) else {}
        if dataclasses.is_dataclass(status) and not isinstance(status, type):
            status = dataclasses.asdict(status)
        wanted = dict(case.keyed()).get("fields")
        keys = list(wanted) if wanted else list(status)
        return [f"{k}={fmt(status.get(k))}" for k in keys]
