"""The peer wire format's cost on the hot messages: our codec (msgpack + dataclasses,
core/messages.py) against msgspec, to decide whether a format change pays (issue 18).

msgspec gets its best case: the same messages declared as ``msgspec.Struct`` classes
(array-like, integer-tagged, typed fields), which would mean redeclaring every message;
encoding our dataclasses with msgspec instead would write field names (maps) and decode
to untyped dicts, slower to use and no safer.  Each figure is the best of ``--repeat``
timings of ``--number`` calls, in microseconds per message, on one core.

    python benchmarks/wire_codec.py                      # prints a table
    python benchmarks/wire_codec.py --json-out /tmp/wire_codec.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from consensuskit.core.client import ClientRequest, ClientResponse, Op
from consensuskit.core.messages import decode, encode
from consensuskit.protocols.raft.messages import COMMAND, AppendEntries, AppendEntriesResponse, LogEntry

try:
    import msgspec
except ImportError:  # pragma: no cover - msgspec is not a dependency
    msgspec = None


def ours(batch: int) -> dict[str, Any]:
    entries = tuple(
        LogEntry(
            term=7,
            index=1000 + i,
            kind=COMMAND,
            data=ClientRequest(
                client_id=f"n1/{i % 8:04x}",
                seq=5000 + i,
                op=Op(kind="put", key=f"key{i:06d}", value="v" * 16),
            ),
        )
        for i in range(batch)
    )
    return {
        f"AppendEntries x{batch}": AppendEntries(
            term=7, leader="n1", prev_log_index=999, prev_log_term=7, entries=entries, leader_commit=990
        ),
        "AppendEntriesResponse": AppendEntriesResponse(term=7, success=True, index=1063),
        "ClientResponse": ClientResponse(
            client_id="n1/0001", seq=9, ok=True, result={"version": 3}, index=1063
        ),
    }


if msgspec is not None:
    # The msgspec twins of the messages above (what a port would declare), at module
    # level so msgspec resolves their (postponed) annotations.

    class MOp(msgspec.Struct, array_like=True, tag=1):
        kind: str
        key: str
        value: Any = None
        expected: Any = None
        expected_version: int | None = None

    class MRequest(msgspec.Struct, array_like=True, tag=2):
        client_id: str
        seq: int
        op: MOp
        consistency: str | None = None

    class MEntry(msgspec.Struct, array_like=True, tag=11):
        term: int
        index: int
        kind: str
        data: MRequest | None = None

    class MAppend(msgspec.Struct, array_like=True, tag=14):
        term: int
        leader: str
        prev_log_index: int
        prev_log_term: int
        entries: tuple[MEntry, ...]
        leader_commit: int

    class MResponse(msgspec.Struct, array_like=True, tag=15):
        term: int
        success: bool
        index: int
        conflict_term: int = 0
        conflict_index: int = 0


def twin(msg: Any) -> Any:
    if isinstance(msg, AppendEntries):
        return MAppend(
            term=msg.term,
            leader=msg.leader,
            prev_log_index=msg.prev_log_index,
            prev_log_term=msg.prev_log_term,
            entries=tuple(
                MEntry(
                    term=e.term,
                    index=e.index,
                    kind=e.kind,
                    data=MRequest(
                        client_id=e.data.client_id,
                        seq=e.data.seq,
                        op=MOp(kind=e.data.op.kind, key=e.data.op.key, value=e.data.op.value),
                    ),
                )
                for e in msg.entries
            ),
            leader_commit=msg.leader_commit,
        )
    if isinstance(msg, AppendEntriesResponse):
        return MResponse(term=msg.term, success=msg.success, index=msg.index)
    return None


def best(stmt: Any, number: int, repeat: int) -> float:
    # CPU time of this process: a loaded machine preempts us, which is not the codec.
    return min(timeit.repeat(stmt, number=number, repeat=repeat, timer=time.process_time)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="entries per AppendEntries (default 64)")
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json-out", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    rows = []
    for name, msg in ours(args.batch).items():
        data = encode(msg)
        assert decode(data) == msg
        row: dict[str, Any] = {
            "message": name,
            "bytes": len(data),
            "encode_us": best(lambda m=msg: encode(m), args.number, args.repeat),
            "decode_us": best(lambda d=data: decode(d), args.number, args.repeat),
        }
        other = twin(msg) if msgspec is not None else None
        if other is not None:
            encoder = msgspec.msgpack.Encoder()
            decoder = msgspec.msgpack.Decoder(type(other))
            packed = encoder.encode(other)
            assert decoder.decode(packed) == other
            row["msgspec_bytes"] = len(packed)
            row["msgspec_encode_us"] = best(lambda o=other, e=encoder: e.encode(o), args.number, args.repeat)
            row["msgspec_decode_us"] = best(lambda p=packed, d=decoder: d.decode(p), args.number, args.repeat)
        rows.append(row)
    table = Table(title="wire codec, microseconds per message (best of runs, one core, CPU time)")
    for col in ("message", "bytes", "encode", "decode", "msgspec bytes", "msgspec encode", "msgspec decode"):
        table.add_column(col, justify="left" if col == "message" else "right")

    def cell(row: dict[str, Any], key: str, fmt: str = "{:.1f}") -> str:
        return fmt.format(row[key]) if key in row else "-"

    for row in rows:
        table.add_row(
            row["message"],
            str(row["bytes"]),
            cell(row, "encode_us"),
            cell(row, "decode_us"),
            cell(row, "msgspec_bytes", "{}"),
            cell(row, "msgspec_encode_us"),
            cell(row, "msgspec_decode_us"),
        )
    console.print(table)
    if msgspec is None:
        console.print("msgspec is not installed: only our codec was measured")
    if args.json_out:
        doc = {"benchmark": "wire_codec", "python": sys.version.split()[0], "batch": args.batch, "rows": rows}
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
