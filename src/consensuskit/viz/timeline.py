"""A space-time diagram of a simulation trace for the terminal.

Rules this module owns:
  * input is trace records as rendered dicts (the JSON-lines form of sim/trace.py:
    ``{"t", "ev", ...}``), so a trace file, ``Trace.tail()`` and
    ``InvariantViolation.trace_tail`` all render the same way;
  * one lane per node, in the order given; one row per interesting event, in input
    order (the simulator already emits them in time order);
  * a message is drawn when it is delivered (or dropped), from the source lane to the
    destination lane; sends, syncs, timers and client network hops are not drawn,
    because the delivery / role change / completion they cause says it better;
  * heartbeat traffic (the protocol's background liveness messages: the catalog's
    ``ViewSpec.heartbeats``, passed as ``heartbeat_types``; Raft's by default) is
    collapsed by default into one line per run, ended by the next message, fault or
    client row and stamped with the time of its last heartbeat (so times stay in order), or shown, or hidden;
  * output is plain text; ``timeline_text`` adds rich styles per row kind.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Literal

HeartbeatMode = Literal["collapse", "show", "hide"]
HEARTBEAT_MODES: tuple[str, ...] = ("collapse", "show", "hide")

# Message types that only prove liveness; a run of them says nothing new per message.
# Raft's, the default; a caller that knows the protocol passes its own (the catalog's
# ``ProtocolSpec.view.heartbeats``, view/summaries.py ``heartbeat_types``).
HEARTBEAT_TYPES = frozenset({"Heartbeat", "HeartbeatResponse"})

# Row kinds -> rich style (used only by timeline_text).
STYLES: dict[str, str] = {
    "msg": "",
    "drop": "red",
    "heartbeat": "dim",
    "role": "bold cyan",
    "leader": "bold green",
    "commit": "green",
    "fault": "bold red",
    "violation": "bold white on red",
    "client": "magenta",
    "phase": "bold",
    "note": "yellow",
    "header": "bold",
}

TIME_WIDTH = 8

# Row kinds a heartbeat run is not split by (see _Renderer.add).
NODE_LOCAL_KINDS = frozenset({"role", "leader", "commit", "note"})


@dataclass(slots=True)
class Row:
    t: float | None
    lanes: str
    label: str
    kind: str

    def text(self) -> str:
        time_col = f"{self.t:{TIME_WIDTH}.3f}" if self.t is not None else " " * TIME_WIDTH
        return f"{time_col} {self.lanes}  {self.label}".rstrip()


class _Renderer:
    """Holds the per-node state the rows depend on (down lanes, last role)."""

    def __init__(
        self,
        node_ids: list[str],
        heartbeats: HeartbeatMode,
        heartbeat_types: Collection[str] = HEARTBEAT_TYPES,
    ) -> None:
        if heartbeats not in HEARTBEAT_MODES:
            raise ValueError(f"unknown heartbeat mode {heartbeats!r}; valid: {', '.join(HEARTBEAT_MODES)}")
        self.node_ids = list(node_ids)
        self.heartbeats = heartbeats
        self.heartbeat_types = frozenset(heartbeat_types)
        self.lane_w = max([len(n) for n in self.node_ids] + [1]) + 4
        self.col = {n: i * self.lane_w + self.lane_w // 2 for i, n in enumerate(self.node_ids)}
        self.down: set[str] = set()
        self.paused: set[str] = set()
        self.role: dict[str, tuple[Any, Any, Any]] = {}
        self.ops: dict[tuple[Any, Any], str] = {}
        self.rows: list[Row] = []
        # Current run of heartbeat traffic: (first time, last time, delivered, dropped).
        self._hb: list[Any] | None = None

    # ------------------------------------------------------------------ lanes
    def blank(self) -> list[str]:
        row = [" "] * (self.lane_w * len(self.node_ids))
        for n, c in self.col.items():
            # A crashed node's lane is dotted, a paused one broken, so outages show.
            row[c] = ":" if n in self.down else "¦" if n in self.paused else "|"
        return row

    def header(self) -> list[Row]:
        names = [" "] * (self.lane_w * len(self.node_ids))
        for n, c in self.col.items():
            start = c - (len(n) - 1) // 2
            names[start : start + len(n)] = list(n)
        return [Row(None, "".join(names).rstrip(), "", "header")]

    def arrow(self, src: str, dst: str, head: str) -> str:
        row = self.blank()
        a, b = self.col[src], self.col[dst]
        if a == b:  # a message to itself: mark the lane only
            row[a] = head
            return "".join(row)
        step = 1 if b > a else -1
        row[a] = "*"
        for i in range(a + step, b, step):
            row[i] = "-"
        if head == "x":
            row[b - step] = "x"
        else:
            row[b - step] = ">" if step == 1 else "<"
        return "".join(row)

    def mark(self, node: Any, ch: str) -> str:
        row = self.blank()
        if node in self.col:
            row[self.col[node]] = ch
        return "".join(row)

    def add(self, t: float, lanes: str, label: str, kind: str) -> None:
        # A heartbeat run goes on through the node-local rows it causes (commits, a
        # follower learning its leader), else each round would split it in two.
        if kind not in NODE_LOCAL_KINDS:
            self.flush_heartbeats()
        self.rows.append(Row(t, lanes, label, kind))

    # ------------------------------------------------------------- heartbeats
    def heartbeat(self, t: float, dropped: bool) -> None:
        if self._hb is None:
            self._hb = [t, t, 0, 0]
        self._hb[1] = t
        self._hb[3 if dropped else 2] += 1

    def flush_heartbeats(self) -> None:
        hb = self._hb
        if hb is None:
            return
        self._hb = None
        first, last, delivered, dropped = hb
        total = delivered + dropped
        label = f"… {total} heartbeat{'s' if total != 1 else ''}"
        if dropped:
            label += f" ({dropped} dropped)"
        if f"{first:.3f}" != f"{last:.3f}":
            label += f" since {first:.3f}"
        # Stamped with the last one: rows let through meanwhile keep times in order.
        self.rows.append(Row(last, "".join(self.blank()), label, "heartbeat"))

    # ---------------------------------------------------------------- records
    def feed(self, r: dict[str, Any]) -> None:
        ev = r.get("ev")
        t = float(r.get("t", 0.0))
        handler = getattr(self, "_ev_" + str(ev), None)
        if handler is not None:
            handler(t, r)

    def _message(self, t: float, r: dict[str, Any], dropped: bool) -> None:
        src, dst = r.get("src"), r.get("dst")
        summary = str(r.get("msg") or r.get("type") or "?")
        if r.get("type") in self.heartbeat_types and self.heartbeats != "show":
            if self.heartbeats == "collapse":
                self.heartbeat(t, dropped)
            return
        reason = f" ({r.get('reason')})" if dropped and r.get("reason") else ""
        if src in self.col and dst in self.col:
            lanes = self.arrow(src, dst, "x" if dropped else ">")
            label = f"{summary}{reason}"
        elif dst in self.col or src in self.col:
            # A client hop (request / answer): the lane marker sits on the node.
            lanes = self.mark(dst if dst in self.col else src, "x" if dropped else "o")
            label = f"{src} -> {dst} {summary}{reason}"
        else:
            lanes = "".join(self.blank())
            label = f"{src} -> {dst} {summary}{reason}"
        self.add(t, lanes, ("dropped " if dropped else "") + label, "drop" if dropped else "msg")

    def _ev_deliver(self, t: float, r: dict[str, Any]) -> None:
        self._message(t, r, dropped=False)

    def _ev_drop(self, t: float, r: dict[str, Any]) -> None:
        self._message(t, r, dropped=True)

    def _ev_hold(self, t: float, r: dict[str, Any]) -> None:
        if r.get("src") in self.col and r.get("dst") in self.col:
            lanes = self.arrow(r["src"], r["dst"], "x")
        else:
            lanes = "".join(self.blank())
        self.add(t, lanes, f"held {r.get('msg') or r.get('type')}", "note")

    def _ev_rec(self, t: float, r: dict[str, Any]) -> None:
        node, kind = r.get("node"), r.get("kind")
        if kind == "role":
            role, term, leader = r.get("role"), r.get("term"), r.get("leader")
            previous = self.role.get(node)
            self.role[node] = (role, term, leader)
            if previous is None and role == "follower" and not term:
                return  # every node boots as a follower in term 0: not news
            if (
                previous is not None
                and previous[:2] == (role, term)
                and (leader is None or previous[2] == leader)
            ):
                return
            if role == "leader":
                self.add(t, self.mark(node, "#"), f"{node} becomes LEADER term {term}", "leader")
            else:
                follows = f" (leader {leader})" if leader else ""
                self.add(t, self.mark(node, "#"), f"{node} becomes {role} term {term}{follows}", "role")
        elif kind == "commit":
            self.add(t, self.mark(node, "+"), f"{node} commit {r.get('index')}", "commit")
        else:
            skip = {"t", "ev", "node", "kind"}
            extra = " ".join(f"{k}={v}" for k, v in r.items() if k not in skip)
            self.add(t, self.mark(node, "*"), f"{node} {kind} {extra}".rstrip(), "note")

    def _ev_start(self, t: float, r: dict[str, Any]) -> None:
        node = r.get("node")
        self.down.discard(node)
        inc = r.get("incarnation")
        if inc is not None and inc > 1:
            self.add(t, self.mark(node, "S"), f"{node} starts (incarnation {inc})", "fault")

    def _ev_fault(self, t: float, r: dict[str, Any]) -> None:
        kind = r.get("kind")
        node = r.get("node")
        args = {k: v for k, v in r.items() if k not in ("t", "ev", "kind")}
        if kind == "crash":
            self.down.add(node)
            self.paused.discard(node)
            self.add(t, self.mark(node, "X"), f"!! crash {node}", "fault")
        elif kind == "restart":
            self.add(t, self.mark(node, "S"), f"!! restart {node}", "fault")
        elif kind == "pause":
            self.paused.add(node)
            self.add(t, self.mark(node, "P"), f"!! pause {node}", "fault")
        elif kind == "resume":
            self.paused.discard(node)
            self.add(t, self.mark(node, "R"), f"!! resume {node}", "fault")
        elif kind == "partition" and "groups" in args:
            groups = " | ".join(str(args["groups"]).split("|"))
            self.add(t, "".join(self.blank()), f"!! partition {groups}", "fault")
        else:
            detail = " ".join(f"{k}={v}" for k, v in args.items())
            self.add(t, "".join(self.blank()), f"!! {kind} {detail}".rstrip(), "fault")

    def _ev_invoke(self, t: float, r: dict[str, Any]) -> None:
        client, seq, node = r.get("client"), r.get("seq"), r.get("node")
        op = str(r.get("op"))
        self.ops[(client, seq)] = op
        attempt = r.get("attempt")
        retry = f" (attempt {attempt})" if isinstance(attempt, int) and attempt > 1 else ""
        self.add(t, self.mark(node, "o"), f"{client} invoke #{seq} {op} at {node}{retry}", "client")

    def _ev_complete(self, t: float, r: dict[str, Any]) -> None:
        client, seq = r.get("client"), r.get("seq")
        op = self.ops.get((client, seq), "")
        result = r.get("result")
        shown = f" -> {result}" if result is not None else ""
        label = f"{client} #{seq} {r.get('status')} {op}{shown}"
        self.add(t, "".join(self.blank()), label.replace("  ", " "), "client")

    def _ev_sched(self, t: float, r: dict[str, Any]) -> None:
        self.add(t, "".join(self.blank()), f"-- {r.get('label')}", "phase")

    def _ev_phase(self, t: float, r: dict[str, Any]) -> None:
        self.add(t, "".join(self.blank()), f"== {r.get('name')}", "phase")

    def _ev_violation(self, t: float, r: dict[str, Any]) -> None:
        self.add(t, "".join(self.blank()), f"!! VIOLATION {r.get('name')}: {r.get('detail')}", "violation")


def timeline_rows(
    records: Iterable[dict[str, Any]],
    node_ids: list[str],
    heartbeats: HeartbeatMode = "collapse",
    heartbeat_types: Collection[str] = HEARTBEAT_TYPES,
) -> list[Row]:
    """The diagram as rows (header first); the shared core of both renderings."""
    renderer = _Renderer(node_ids, heartbeats, heartbeat_types)
    for record in records:
        renderer.feed(record)
    renderer.flush_heartbeats()
    return renderer.header() + renderer.rows


def _fit(line: str, width: int | None) -> str:
    if width is None or len(line) <= width:
        return line
    return line[: max(width - 1, 0)] + "…"


def render_timeline(
    records: Iterable[dict[str, Any]],
    node_ids: list[str],
    width: int | None = None,
    heartbeats: HeartbeatMode = "collapse",
    heartbeat_types: Collection[str] = HEARTBEAT_TYPES,
) -> str:
    """Plain-text space-time diagram; lines longer than ``width`` are cut with '…'."""
    rows = timeline_rows(records, node_ids, heartbeats, heartbeat_types)
    return "\n".join(_fit(row.text(), width) for row in rows)


def timeline_text(
    records: Iterable[dict[str, Any]],
    node_ids: list[str],
    width: int | None = None,
    heartbeats: HeartbeatMode = "collapse",
    heartbeat_types: Collection[str] = HEARTBEAT_TYPES,
) -> Any:
    """The same diagram as a ``rich.text.Text`` with a style per row kind."""
    from rich.text import Text

    text = Text(no_wrap=True, overflow="ellipsis")
    rows = timeline_rows(records, node_ids, heartbeats, heartbeat_types)
    for i, row in enumerate(rows):
        if i:
            text.append("\n")
        text.append(_fit(row.text(), width), style=STYLES.get(row.kind, ""))
    return text
