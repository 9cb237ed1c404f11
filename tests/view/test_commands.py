"""``consensuskit view`` and the ``--view`` of ``scenario run`` / ``sim`` (view/commands.py)."""

from __future__ import annotations

import sys

import pytest

from consensuskit.cli import main
from consensuskit.view import commands
from tests.view.conftest import read_records


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_view_wants_one_input(capsys):
    code, _, err = run(capsys, "view")
    assert (
        code == 2
        and err.strip() == "error: give a TRACE file or --endpoints (live mode), not both or neither"
    )


def test_a_bad_trace_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    code, _, err = run(capsys, "view", str(bad), "--html", str(tmp_path / "x.html"))
    assert code == 2 and err.count("\n") == 1 and "bad.jsonl:1: not JSON" in err
    code, _, err = run(capsys, "view", str(tmp_path / "absent.jsonl"))
    assert code == 2 and "no such trace file" in err


def test_an_unknown_protocol_is_one_line(capsys, traces):
    code, _, err = run(capsys, "view", str(traces["raft"]), "--protocol", "nope", "--html", "/dev/null")
    assert code == 2 and "unknown protocol 'nope'" in err and err.count("\n") == 1


def test_live_mode_without_the_live_side_exits_2(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "consensuskit.view.live", None)  # import fails
    code, _, err = run(capsys, "view", "--endpoints", "http://127.0.0.1:1")
    assert code == 2 and "live mode is not available" in err and err.count("\n") == 1


def test_html_and_shiviz_exports(capsys, tmp_path, traces):
    html, log = tmp_path / "v.html", tmp_path / "v.shiviz"
    code, out, _ = run(capsys, "view", str(traces["2pc"]), "--html", str(html), "--shiviz", str(log))
    assert code == 0 and "wrote" in out
    assert html.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert log.read_text(encoding="utf-8").startswith("(?<host>")


def test_a_taken_port_is_one_line(capsys, traces):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "view", str(traces["raft"]), "--port", str(port))
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err and err.count("\n") == 1


def test_view_serves_the_trace(capsys, monkeypatch, traces):
    served = {}
    monkeypatch.setattr(
        "consensuskit.view.app.serve", lambda app, host, port: served.update(app=app, port=port)
    )
    code, _, _ = run(capsys, "view", str(traces["raft"]), "--port", "0")
    assert code == 0 and served["port"] == 0


@pytest.fixture()
def captured(monkeypatch):
    calls: list[dict] = []

    def fake(records, protocol=None, node_ids=None, title="", host="127.0.0.1", port=commands.DEFAULT_PORT):
        calls.append({"records": list(records), "protocol": protocol, "nodes": node_ids, "title": title})

    monkeypatch.setattr(commands, "serve_records", fake)
    return calls


def test_scenario_run_view_serves_the_run(capsys, captured):
    code, out, _ = run(capsys, "scenario", "run", "raft-election", "--view")
    assert code == 0 and "PASSED" in out
    [call] = captured
    assert call["protocol"] == "raft" and call["title"].startswith("raft-election")
    assert any(r["ev"] == "rec" and r["kind"] == "role" for r in call["records"])


def test_sim_view_serves_the_run_and_keeps_a_given_trace(capsys, captured, tmp_path):
    trace = tmp_path / "t.jsonl"
    code, _, _ = run(capsys, "sim", "gossip", "--duration", "0.5", "--view", "--trace", str(trace))
    assert code == 0
    [call] = captured
    assert call["protocol"] == "gossip" and call["nodes"] == ["n1", "n2", "n3", "n4", "n5"]
    assert call["records"] == read_records(trace)
