"""Exports: the self-contained page and ShiViz's log format (view/export.py)."""

import json
import re

from consensuskit.view.export import (
    MODULES,
    SHIVIZ_REGEX,
    bundle,
    render_html,
    script_json,
    shiviz_log,
    static_text,
)
from consensuskit.view.summaries import python_pattern, view_meta
from tests.view.conftest import read_records

_TOP_LEVEL = re.compile(
    r"^(?:export )?(?:async )?(?:function|const|let|class) ([A-Za-z_$][\w$]*)", re.MULTILINE
)


def test_the_bundle_joins_the_modules_without_imports_or_exports():
    source = bundle()
    assert not re.search(r"^\s*(import|export)\b", source, re.MULTILINE)
    # One scope for every module: a top-level name defined twice would break the page.
    names = [n for m in MODULES for n in _TOP_LEVEL.findall(static_text(m))]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    # Every import a module makes is of a module the bundle holds, on one line.
    for name in MODULES:
        for line in static_text(name).splitlines():
            if line.startswith("import"):
                assert re.fullmatch(r'import \{[^}]*\} from "\./([a-z]+\.js)";', line), line
                assert re.search(r'"\./([a-z]+\.js)"', line)[1] in MODULES


def test_the_page_is_self_contained():
    meta = view_meta([{"t": 0, "ev": "start", "node": "n1"}], protocol="raft")
    page = render_html(meta, [{"t": 0, "ev": "start", "node": "n1", "x": "</script><b>"}])
    assert 'src="' not in page and re.findall(r'href="([^"]*)"', page) == ["data:,"]
    assert "</script><b>" not in page  # the data cannot end its element
    data = re.search(r'<script type="application/json" id="view-data">(.*?)</script>', page, re.S)[1]
    assert json.loads(data)["records"][0]["x"] == "</script><b>"


def test_script_json_escapes_markup():
    assert script_json({"a": "<&>"}) == '{"a":"\\u003c\\u0026\\u003e"}'


def test_shiviz_log_parses_with_its_regex_and_clocks_are_consistent(traces):
    records = read_records(traces["raft"])
    nodes = view_meta(records)["nodes"]
    text = shiviz_log(records, nodes)
    header, blank, body = text.split("\n", 2)
    assert header == SHIVIZ_REGEX and blank == ""
    regex = python_pattern(header.replace("\\n", "\n"))
    events = list(regex.finditer(body))
    assert len(events) == body.count("\n") // 2 > 100
    own: dict[str, int] = {}
    delivered = 0
    for e in events:
        host, clock = e["host"], json.loads(e["clock"])
        assert host in nodes and clock[host] == own.get(host, 0) + 1  # each event ticks its host
        own[host] = clock[host]
        # A clock never knows more of another host than that host has done so far.
        assert all(v <= own.get(h, 0) for h, v in clock.items() if h != host), (host, clock, own)
        delivered += " deliver " in e["event"]
    assert delivered > 50
    # A delivery's clock has seen its send: some clocks name more than their own host.
    assert any(len(json.loads(e["clock"])) > 1 for e in events)
