"""The peer wire format's cost on the hot messages (issue 18): the codec's msgpack
reference implementation (``_reference_encode``/``_reference_decode`` in core/messages.py)
against its msgspec engine (``encode``/``decode``: the same bytes, checked here), and
msgspec's best case, the same messages redeclared as ``msgspec.Struct`` classes
(array-like, integer-tagged, typed fields): what a port of every message would buy, for
scale; we keep the dataclasses.  Each figure is the best of ``--repeat`` timings of
``--number`` calls, in microseconds per message, CPU time of this process, the
implementations interleaved so that a loaded machine slows them alike.

    python benchmarks/wire_codec.py                      # prints a table
    python benchmarks/wire_codec.py --json-out /tmp/wire_codec.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import timeit
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from consensuskit.core import messages
from consensuskit.core.client import ClientRequest, ClientResponse, Op
from consensuskit.core.messages import decode, encode
from consensuskit.protocols.raft.messages import COMMAND, AppendEntries, AppendEntriesResponse, LogEntry
from results_file import write_json


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


def interleaved(stmts: dict[str, Any], number: int, repeat: int) -> dict[str, float]:
    """The best timing of each statement, taking turns: noise hits them alike."""
    found = {name: float("inf") for name in stmts}
    for _ in range(repeat):
        for name, stmt in stmts.items():
            found[name] = min(found[name], best(stmt, number, 1))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="entries per AppendEntries (default 64)")
    parser.add_argument("--number", type=int, default=2000, help="calls per timing (a batch: / --batch)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json-out", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    console = Console(highlight=False, width=120)  # the table is wider than a pipe's 80 columns
    rows = []
    for name, msg in ours(args.batch).items():
        data = encode(msg)
        if data != messages._reference_encode(msg):
            raise SystemExit(f"{name}: the engine's bytes differ from the reference's")
        assert decode(data) == msg == messages._reference_decode(data)
        number = max(1, args.number // args.batch) if "x" in name else args.number
        stmts = {
            "reference_encode_us": lambda m=msg: messages._reference_encode(m),
            "engine_encode_us": lambda m=msg: encode(m),
            "reference_decode_us": lambda d=data: messages._reference_decode(d),
            "engine_decode_us": lambda d=data: decode(d),
        }
        other = twin(msg)
        if other is not None:
            encoder = msgspec.msgpack.Encoder()
            decoder = msgspec.msgpack.Decoder(type(other))
            packed = encoder.encode(other)
            assert decoder.decode(packed) == other
            stmts["struct_encode_us"] = lambda o=other, e=encoder: e.encode(o)
            stmts["struct_decode_us"] = lambda p=packed, d=decoder: d.decode(p)
        row: dict[str, Any] = {"message": name, "bytes": len(data)}
        row |= interleaved(stmts, number, args.repeat)
        if other is not None:
            row["struct_bytes"] = len(packed)
        rows.append(row)
    table = Table(title="wire codec, microseconds per message (best of runs, one core, CPU time)")
    columns = ("message", "bytes", "reference enc", "engine enc", "reference dec", "engine dec")
    for col in (*columns, "Struct enc", "Struct dec"):
        table.add_column(col, justify="left" if col == "message" else "right")

    def cell(row: dict[str, Any], key: str) -> str:
        return f"{row[key]:.1f}" if key in row else "-"

    def engine(row: dict[str, Any], op: str) -> str:
        ratio = row[f"reference_{op}_us"] / row[f"engine_{op}_us"]
        return f"{row[f'engine_{op}_us']:.1f} ({ratio:.1f}x)"

    for row in rows:
        table.add_row(
            row["message"],
            str(row["bytes"]),
            cell(row, "reference_encode_us"),
            engine(row, "encode"),
            cell(row, "reference_decode_us"),
            engine(row, "decode"),
            cell(row, "struct_encode_us"),
            cell(row, "struct_decode_us"),
        )
    console.print(table)
    console.print("engine bytes identical to the reference's: yes (checked per message)")
    if args.json_out:
        doc = {
            "benchmark": "wire_codec",
            "python": sys.version.split()[0],
            "msgspec": msgspec.__version__,
            "batch": args.batch,
            "loadavg": os.getloadavg(),
            "rows": rows,
        }
        write_json(args.json_out, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
