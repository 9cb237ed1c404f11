"""Loading a JSON-lines trace for the view (view/trace_io.py)."""

import json

import pytest

from consensuskit.view.trace_io import TraceError, load_trace, node_ids


def write(tmp_path, lines):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_loads_records_and_skips_blank_lines(tmp_path):
    path = write(
        tmp_path, ['{"t": 0, "ev": "start", "node": "n1"}', "", '{"t": 0.5, "ev": "phase", "name": "x"}']
    )
    assert [r["ev"] for r in load_trace(path)] == ["start", "phase"]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"t": 0, "ev": "start"}', "{not json"], r"t.jsonl:2: not JSON"),
        (['{"t": 0}'], r"t.jsonl:1: a trace record is an object with an 'ev' string"),
        (["[1, 2]"], r"t.jsonl:1: a trace record is an object"),
        (['{"t": "soon", "ev": "x"}'], r"t.jsonl:1: a trace record has a numeric 't'"),
    ],
)
def test_a_malformed_trace_is_one_line_naming_the_line(tmp_path, lines, expected):
    with pytest.raises(TraceError, match=expected) as info:
        load_trace(write(tmp_path, lines))
    assert "\n" not in str(info.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(TraceError, match="no such trace file"):
        load_trace(tmp_path / "absent.jsonl")


def test_node_ids_started_first_then_recording_nodes():
    records = [
        {"t": 0, "ev": "rec", "node": "n9", "kind": "role"},
        {"t": 0, "ev": "start", "node": "n2"},
        {"t": 0, "ev": "start", "node": "n1"},
        {"t": 1, "ev": "deliver", "src": "c1", "dst": "n1"},
    ]
    assert node_ids(json.loads(json.dumps(records))) == ["n2", "n1", "n9"]
