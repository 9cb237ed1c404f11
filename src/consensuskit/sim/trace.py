"""The simulator's trace: every send, delivery, drop, timer, protocol record, fault
and client event, in the order the simulator produced it.

Rules this module owns:
  * a record is a tuple ``(t, ev, *fields)`` with a fixed field layout per ``ev``
    (``LAYOUTS``); building it is the only per-record cost on the hot path;
  * every record is folded into one SHA-256 (see docs/trace.md): the digest is the
    hash of the concatenated msgpack encodings of the records, where any object
    msgpack does not know (messages, ops, ...) is replaced by its type name.  Records
    are encoded in batches, but the bytes are the same as one record at a time, so
    the digest does not depend on when ``sha256()`` is called;
  * the last ``keep`` (>= 2000) records stay in memory for ``tail()``;
  * JSON lines are rendered only when a path was given; a ``rec``/``fault`` field named
    like one of the record's own keys (``t``, ``ev``, ``node``, ``kind``) is rendered as
    ``rec_<name>``, so it never overwrites which node the record belongs to.
"""

from __future__ import annotations

import hashlib
import json
import operator
from typing import IO, Any

import msgpack

from consensuskit.core.messages import summarize

# Field names after (t, ev) for each record kind.  Fields named "msg" hold the message
# object itself; they render as {"type": ..., "msg": summarize(msg)}.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "send": ("src", "dst", "mid", "msg"),
    "deliver": ("src", "dst", "mid", "msg"),
    "drop": ("src", "dst", "mid", "msg", "reason"),
    "dup": ("src", "dst", "mid", "msg"),
    "hold": ("src", "dst", "mid", "msg"),
    "release": ("src", "dst", "mid", "msg"),
    "timer": ("node", "key"),
    "sync": ("node", "writes"),
    "batch": ("node", "inputs"),
    "rec": ("node", "kind", "fields"),
    "start": ("node", "incarnation"),
    "fault": ("kind", "args"),
    "sched": ("label",),
    "invoke": ("client", "seq", "node", "attempt", "op"),
    "request": ("client", "node", "seq"),
    "response": ("node", "client", "seq", "ok", "error"),
    "late": ("node", "client", "seq"),
    "complete": ("client", "seq", "status", "result"),
    "violation": ("name", "detail"),
    "phase": ("name",),
}

_BATCH = 4096


# msgpack's fallback for objects it does not know: the hash stands on values msgpack
# knows; anything else (message objects, ops, sets whose order depends on
# PYTHONHASHSEED) is reduced to its type name.  attrgetter is C code: no Python frame
# per message, which halves the cost of packing a batch.
_type_name = operator.attrgetter("__class__.__name__")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, bytes):
        return obj.hex()
    return summarize(obj)


def render(record: tuple[Any, ...]) -> dict[str, Any]:
    """One record as the dict written to the JSON-lines trace."""
    ev = record[1]
    out: dict[str, Any] = {"t": round(record[0], 6), "ev": ev}
    names = LAYOUTS.get(ev)
    if names is None:  # unknown kind: keep positional fields
        out["fields"] = list(record[2:])
        return out
    for name, value in zip(names, record[2:], strict=False):
        if name == "msg":
            out["type"] = type(value).__name__
            out["msg"] = summarize(value)
        elif name == "fields" or name == "args":
            if isinstance(value, dict):
                for key, item in value.items():
                    # A field named like the record's own keys (a protocol's
                    # record("rejoin-promote", node=peer)) must not rename the record's node.
                    out[f"rec_{key}" if key in out else key] = item
            elif value is not None:
                out[name] = value
        else:
            out[name] = value
    return out


class Trace:
    __slots__ = ("_buf", "_file", "_flushed", "_hash", "_keep", "_pack", "_prev", "batch", "path")

    def __init__(self, path: str | None = None, keep: int = 2000) -> None:
        self.path = path
        self._buf: list[tuple[Any, ...]] = []
        self._prev: list[tuple[Any, ...]] = []  # the batch before _buf, for tail()
        self._keep = max(keep, 1)
        self.batch = _BATCH  # flush() when this many records are buffered
        self._flushed = 0
        self._hash = hashlib.sha256()
        self._pack = msgpack.Packer(default=_type_name, use_bin_type=True).pack
        self._file: IO[str] | None = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115

    # The simulator appends tuples straight to this list (bound method) and flushes it
    # when it holds ``batch`` records; everything else goes through add().
    @property
    def append(self) -> Any:
        return self._buf.append

    def add(self, t: float, ev: str, *fields: Any) -> None:
        self._buf.append((t, ev, *fields))

    def flush(self) -> None:
        if not self._buf:
            return
        # Copy then clear in place: the simulator holds the list's bound append.
        buf = list(self._buf)
        self._buf.clear()
        data = self._pack(buf)
        # Strip the array header so the bytes equal the records packed one by one.
        n = len(buf)
        header = 1 if n < 16 else 3 if n <= 0xFFFF else 5
        self._hash.update(memoryview(data)[header:])
        if self._file is not None:
            write = self._file.write
            for record in buf:
                write(json.dumps(render(record), default=_jsonable, separators=(",", ":")))
                write("\n")
        self._flushed += n
        # Keep enough history for tail(): the previous batch plus the current one.
        if n >= self._keep:
            self._prev = buf
        else:
            self._prev = (self._prev + buf)[-self._keep :]

    @property
    def count(self) -> int:
        return self._flushed + len(self._buf)

    def sha256(self) -> str:
        self.flush()
        return self._hash.copy().hexdigest()

    def tail_records(self, n: int = 40) -> list[tuple[Any, ...]]:
        if n <= 0:
            return []
        if len(self._buf) >= n:
            return self._buf[-n:]
        return (self._prev + self._buf)[-n:]

    def tail(self, n: int = 40) -> list[dict[str, Any]]:
        """The last ``n`` records rendered like the JSON-lines file."""
        return [render(r) for r in self.tail_records(n)]

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
