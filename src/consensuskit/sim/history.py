"""Client histories: one record per operation, as the linearizability checker reads them.

Rules this module owns (format in docs/history.md):
  * intervals are closed: ``invoke`` is when the client first sent the op,
    ``complete`` when it learned the outcome;
  * ``status`` is "ok" (took effect, ``result`` valid), "fail" (definitely did not take
    effect: every attempt was refused) or "unknown" (may or may not have taken effect;
    ``complete`` is null, i.e. the interval stays open to the end of the history);
    a timed-out op is never "fail";
  * records are kept in invocation order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("ok", "fail", "unknown")


@dataclass(slots=True, kw_only=True)
class OpRecord:
    process: str  # client id
    seq: int
    op: str  # get / put / delete / cas
    key: str
    value: Any = None
    expected: Any = None
    expected_version: int | None = None
    invoke: float
    complete: float | None = None
    status: str | None = None  # None while pending
    result: Any = None
    index: int | None = None  # log index the answer reflects (from the response)
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "seq": self.seq,
            "op": self.op,
            "key": self.key,
            "value": self.value,
            "expected": self.expected,
            "expected_version": self.expected_version,
            "invoke": self.invoke,
            "complete": self.complete,
            "status": self.status,
            "result": self.result,
            "index": self.index,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OpRecord:
        missing = [k for k in ("process", "seq", "op", "key", "invoke") if k not in d]
        if missing:
            raise ValueError(f"history record lacks {', '.join(missing)}: {d!r}")
        status = d.get("status")
        if status is not None and status not in STATUSES:
            raise ValueError(f"bad status {status!r}; valid: {', '.join(STATUSES)}")
        return cls(
            process=str(d["process"]),
            seq=int(d["seq"]),
            op=str(d["op"]),
            key=str(d["key"]),
            value=d.get("value"),
            expected=d.get("expected"),
            expected_version=d.get("expected_version"),
            invoke=float(d["invoke"]),
            complete=None if d.get("complete") is None else float(d["complete"]),
            status=status,
            result=d.get("result"),
            index=d.get("index"),
            attempts=int(d.get("attempts", 0)),
        )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, bytes):
        return obj.hex()
    return repr(obj)


@dataclass(slots=True)
class History:
    ops: list[OpRecord] = field(default_factory=list)

    def __iter__(self) -> Iterator[OpRecord]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def append(self, record: OpRecord) -> None:
        self.ops.append(record)

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "fail": 0, "unknown": 0}
        pending = 0
        for r in self.ops:
            if r.status is None:
                pending += 1
            else:
                out[r.status] += 1
        if pending:  # only mid-run; a finished run has none
            out["pending"] = pending
        return out

    def to_jsonl(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for r in self.ops:
                f.write(json.dumps(r.to_dict(), default=_jsonable, separators=(",", ":")))
                f.write("\n")

    @classmethod
    def from_jsonl(cls, path: str) -> History:
        ops: list[OpRecord] = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    ops.append(OpRecord.from_dict(json.loads(line)))
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{path}:{lineno}: {exc}") from exc
        return cls(ops)
