"""History readers: what they accept, and one-line errors with the line for the rest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from consensuskit.check.linearizability import UNKNOWN, HistoryFormatError, read_history
from consensuskit.cli import main


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


ETCD = [
    "INFO  jepsen.util - 0\t:invoke\t:write\t3",
    "INFO  jepsen.util - 1\t:invoke\t:read\tnil",
    "INFO  jepsen.util - 0\t:ok\t:write\t3",
    "INFO  jepsen.util - 1\t:ok\t:read\t3",
    "INFO  jepsen.util - 2   :invoke :cas    [3 0]",
    "INFO  jepsen.util - 2   :info   :cas    :timed-out",
    "INFO  jepsen.util - 3\t:invoke\t:read\tnil",
    "INFO  jepsen.util - 3\t:fail\t:read\t:timed-out",
    "INFO  jepsen.util - 4\t:invoke\t:cas\t[1 2]",
    "INFO  jepsen.util - 4\t:fail\t:cas\t[1 2]",
]


def test_porcupine_etcd_lines(tmp_path: Path) -> None:
    ops = read_history(write(tmp_path, "e.log", ETCD), "porcupine-etcd")
    by_client = {o.client: o for o in ops}
    assert by_client["0"].input.kind == "write" and by_client["0"].input.value == 3
    assert (by_client["0"].call, by_client["0"].ret) == (1.0, 3.0)
    assert by_client["1"].output == 3
    cas = by_client["2"]  # :info stays open to the end
    assert cas.input.expected == 3 and cas.input.value == 0 and math.isinf(cas.ret) and cas.output is UNKNOWN
    assert by_client["3"].output is UNKNOWN and by_client["3"].ret == 8.0  # timed-out read returns
    assert by_client["4"].output is False


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (["INFO  jepsen.util - 0\t:ok\t:write\t3"], 1, "no invocation"),
        (["INFO  jepsen.util - 0\t:invoke\t:write\t3", "garbage"], 2, "not a Jepsen etcd line"),
        (["INFO  jepsen.util - 0\t:invoke\t:cas\t3"], 1, "cas needs"),
        (["INFO  jepsen.util - 0\t:invoke\t:write\tx"], 1, "unreadable value"),
        (
            ["INFO  jepsen.util - 0\t:invoke\t:write\t1", "INFO  jepsen.util - 0\t:invoke\t:write\t2"],
            2,
            "open",
        ),
    ],
)
def test_porcupine_etcd_errors_name_the_line(
    tmp_path: Path, lines: list[str], line: int, message: str
) -> None:
    path = write(tmp_path, "bad.log", lines)
    with pytest.raises(HistoryFormatError, match=message) as info:
        read_history(path, "porcupine-etcd")
    assert info.value.line == line and f"bad.log:{line}:" in str(info.value)


def test_porcupine_kv_lines_and_leftover_invokes(tmp_path: Path) -> None:
    lines = [
        '{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}',
        '{:process 1, :type :invoke, :f :get, :key "0", :value nil}',
        '{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}',
        '{:process 1, :type :ok, :f :get, :key "0", :value ""}',
        '{:process 2, :type :invoke, :f :put, :key "1", :value "z"}',
    ]
    ops = read_history(write(tmp_path, "k.txt", lines), "porcupine-kv")
    assert [(o.input.kind, o.input.key, o.output) for o in ops][:2] == [("append", "0", {}), ("get", "0", "")]
    assert math.isinf(ops[2].ret) and ops[2].output is UNKNOWN
    with pytest.raises(HistoryFormatError, match=r"b\.txt:2: not a Porcupine kv line"):
        read_history(write(tmp_path, "b.txt", [lines[0], "{:process 0}"]), "porcupine-kv")


def test_consensuskit_records_and_events(tmp_path: Path) -> None:
    records = [
        {
            "process": "c1",
            "seq": 1,
            "op": "put",
            "key": "a",
            "value": 1,
            "invoke": 0.5,
            "complete": 1.0,
            "status": "ok",
            "result": {"version": 1},
        },
        {
            "process": "c2",
            "seq": 1,
            "op": "put",
            "key": "a",
            "value": 2,
            "invoke": 0.6,
            "complete": None,
            "status": "unknown",
        },
        {
            "process": "c3",
            "seq": 1,
            "op": "put",
            "key": "a",
            "value": 3,
            "invoke": 0.6,
            "complete": 0.9,
            "status": "fail",
        },
        {"event": "invoke", "process": "c4", "time": 2.0, "op": "get", "key": "a"},
        {"event": "ok", "process": "c4", "time": 2.5, "result": {"value": 1, "version": 1}},
        {"event": "invoke", "process": "c5", "time": 3.0, "op": "cas", "key": "a", "expected": 1, "value": 7},
        {"event": "info", "process": "c5", "time": 3.5},
        {"event": "invoke", "process": "c6", "time": 4.0, "op": "delete", "key": "a"},
    ]
    ops = read_history(write(tmp_path, "h.jsonl", [json.dumps(r) for r in records]), "consensuskit")
    assert [o.client for o in ops] == ["c1", "c2", "c4", "c5", "c6"]  # fail dropped, by call time
    assert ops[0].output == {"version": 1} and ops[2].ret == 2.5
    assert all(math.isinf(o.ret) and o.output is UNKNOWN for o in (ops[1], ops[3], ops[4]))
    assert ops[3].input.expected == 1 and ops[3].input.value == 7


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (
            ['{"process": "c1", "op": "get", "key": "a", "invoke": 0, "status": "ok", "complete": 1}', "{"],
            2,
            "not JSON",
        ),
        (['{"event": "ok", "process": "c1", "time": 1}'], 1, "no invocation"),
        (
            [
                '{"event": "invoke", "process": "c1", "time": 1, "op": "get", "key": "a"}',
                '{"event": "invoke", "process": "c1", "time": 2, "op": "get", "key": "a"}',
            ],
            2,
            "invokes again",
        ),
        (['{"event": "done", "process": "c1", "time": 1}'], 1, "unknown event"),
        (
            ['{"process": "c1", "op": "scan", "key": "a", "invoke": 0, "status": "ok", "complete": 1}'],
            1,
            "unknown op",
        ),
        (
            ['{"process": "c1", "op": "get", "key": "a", "invoke": 2, "status": "ok", "complete": 1}'],
            1,
            "before its invocation",
        ),
        (
            ['{"process": "c1", "op": "get", "key": "a", "invoke": "x", "status": "ok"}'],
            1,
            "must be a number",
        ),
        (['{"process": "c1", "op": "get", "key": "a", "invoke": 0, "status": "maybe"}'], 1, "status must be"),
        (["[1, 2]"], 1, "expected a JSON object"),
    ],
)
def test_consensuskit_errors_name_the_line(tmp_path: Path, lines: list[str], line: int, message: str) -> None:
    with pytest.raises(HistoryFormatError, match=message) as info:
        read_history(write(tmp_path, "bad.jsonl", lines), "consensuskit")
    assert info.value.line == line


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


DATA = Path(__file__).resolve().parents[1] / "data" / "porcupine"


def test_cli_exit_codes_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(["check", str(DATA / "kv/c01-ok.txt"), "--format", "porcupine-kv"], capsys)
    assert code == 0 and out.startswith("linearizable")
    code, out, _ = run_cli(["check", str(DATA / "kv/c01-bad.txt"), "--format", "porcupine-kv"], capsys)
    assert code == 1 and "NOT linearizable" in out and "impossible when the state is" in out
    code, out, _ = run_cli(
        ["check", str(DATA / "jepsen/etcd_000.log"), "--format", "porcupine-etcd", "--json"], capsys
    )
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == "not-linearizable" and doc["model"] == "cas-register"
    assert doc["failing_partition"]["unplaced"]
    code, out, _ = run_cli(
        [
            "check",
            str(DATA / "jepsen/etcd_002.log"),
            "--format",
            "porcupine-etcd",
            "--timeout",
            "0",
            "--json",
        ],
        capsys,
    )
    assert code == 2 and json.loads(out)["verdict"] == "unknown"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "nope"], "unknown format 'nope'; valid: consensuskit, porcupine-etcd, porcupine-kv"),
        (["--model", "queue"], "unknown model 'queue'"),
        (["--format", "porcupine-etcd"], "bad.jsonl:1: not a Jepsen etcd line"),
        (["--model", "register"], "the register model has no 'cas' operation"),
        (["--colour"], "No such option"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    path = write(
        tmp_path,
        "bad.jsonl",
        [
            '{"process": "c1", "op": "cas", "key": "a", "expected": 1, "value": 2, '
            '"invoke": 0, "status": "unknown"}'
        ],
    )
    code, _, err = run_cli(["check", str(path), *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
