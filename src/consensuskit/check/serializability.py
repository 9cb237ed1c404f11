"""Serializability of a transaction history, by cycle search in its dependency graph
(Adya's direct serialization graph, as Elle (Kingsbury & Alvaro, VLDB 2020) infers it).

Why the graph can be built exactly: Elle needs to know, for every value read, which
transaction wrote it, and the order of the versions of each object.  Its list-append
workload gets both from the values; here the store itself tells: every version of a key
names its writer and the writer it replaced (sharded-raft's answers carry, for each key
a transaction touched, ``[key, writer, prev]``, and the keys it ``wrote``; a
transaction's id is unique per attempt, so every write is unique -- Elle's
"recoverability").  From the committed (ok) transactions of a history:

  * version order: ``prev -> writer`` for every (key, writer, prev) anyone observed, and
    ``observed -> T`` when T wrote a key over the version it read (T locks what it
    writes, so it overwrote exactly that version);
  * ww: ``W1 -> W2`` when W2's version of k replaced W1's;
  * wr: ``W -> T`` when T read W's version of k;
  * rw (anti-dependency): ``T -> W2`` when T read W1's version of k and W2 replaced it.

Transactions whose outcome the client never learned take part through what others
observed of them (their writes), which is all that can be known.  A history is
serializable iff this graph is acyclic (Adya's PL-3, for these histories with known
version orders).  A cycle is reported with its edges and named as Adya/Elle do: only ww
-> G0; ww and wr -> G1c; one rw -> G-single; more -> G2.  Two transactions that both
overwrote the same version of a key are reported too (a lost update: the version order
would branch).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

INITIAL = "<initial>"  # the version before any write


@dataclass(slots=True)
class SerializabilityResult:
    ok: bool
    transactions: int
    edges: int
    anomalies: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "transactions": self.transactions,
            "edges": self.edges,
            "anomalies": list(self.anomalies),
        }

    def describe(self) -> str:
        if self.ok:
            return f"serializable ({self.transactions} transactions, {self.edges} dependencies)"
        first = self.anomalies[0]
        return f"{first['type']}: {first['text']}"


def check_transactions(txns: Iterable[dict[str, Any]]) -> SerializabilityResult:
    """``txns``: committed transactions as ``{"txn", "reads": [[key, writer, prev]],
    "wrote": [keys]}`` (the answers of sharded-raft's transactions)."""
    anomalies: list[dict[str, Any]] = []
    # key -> version -> the version it replaced (INITIAL for the first write).
    replaced: dict[str, dict[str, str]] = defaultdict(dict)
    observed: list[tuple[str, str, str, bool]] = []  # (txn, key, version read, wrote it)
    names: set[str] = set()

    def note(key: str, version: str, prev: str) -> None:
        known = replaced[key].get(version)
        if known is None:
            replaced[key][version] = prev
        elif known != prev:
            anomalies.append(
                {"type": "inconsistent-order", "text": f"{version} replaced both {known} and {prev} on {key}"}
            )

    for t in txns:
        name = t["txn"]
        names.add(name)
        wrote = set(t.get("wrote") or ())
        for key, writer, prev in t.get("reads") or ():
            version = writer or INITIAL
            if writer is not None:
                note(key, writer, prev or INITIAL)
            if key in wrote:
                note(key, name, version)
            observed.append((name, key, version, key in wrote))

    edges: dict[str, dict[str, str]] = defaultdict(dict)  # a -> b -> kind

    def edge(a: str, b: str, kind: str) -> None:
        if a in (INITIAL, b):
            return
        # Keep the strongest reason per pair: ww before wr before rw (the cycle names).
        if edges[a].get(b) not in ("ww", "wr") or kind == "ww":
            edges[a][b] = kind

    successor: dict[tuple[str, str], str] = {}
    for key, versions in replaced.items():
        for version, prev in sorted(versions.items()):
            other = successor.setdefault((key, prev), version)
            if other != version:
                anomalies.append(
                    {
                        "type": "lost-update",
                        "text": f"{other} and {version} both overwrote {prev}'s version of {key}",
                    }
                )
            edge(prev, version, "ww")
    for name, key, version, wrote in observed:
        if wrote:
            continue
        edge(version, name, "wr")
        nxt = successor.get((key, version))
        if nxt is not None:
            edge(name, nxt, "rw")

    for cycle in _cycles(edges):
        kinds = [edges[a][b] for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True)]
        rw = kinds.count("rw")
        kind = "G0" if set(kinds) == {"ww"} else "G1c" if rw == 0 else "G-single" if rw == 1 else "G2"
        path = " ".join(f"{a} -{k}->" for a, k in zip(cycle, kinds, strict=True)) + f" {cycle[0]}"
        anomalies.append({"type": kind, "text": path, "cycle": cycle, "edges": kinds})
    nodes = names | set(edges) | {b for bs in edges.values() for b in bs}
    nodes.discard(INITIAL)
    count = sum(len(bs) for bs in edges.values())
    return SerializabilityResult(ok=not anomalies, transactions=len(nodes), edges=count, anomalies=anomalies)


def _cycles(edges: dict[str, dict[str, str]], limit: int = 5) -> list[list[str]]:
    """One cycle from each of at most ``limit`` strongly connected components with more
    than one node (Tarjan's algorithm, iterative; then a BFS inside the component)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    cycles = []
    for component in components[:limit]:
        members = set(component)
        start = min(component)
        # BFS from start's successors back to start, inside the component.
        parent: dict[str, str] = {}
        queue = deque([start])
        found = None
        while queue and found is None:
            node = queue.popleft()
            for child in sorted(edges.get(node, {})):
                if child not in members:
                    continue
                if child == start:
                    found = node
                    break
                if child not in parent:
                    parent[child] = node
                    queue.append(child)
        path = [found] if found is not None else []
        while path and path[-1] != start:
            path.append(parent[path[-1]])
        cycles.append(list(reversed(path)))
    return cycles
