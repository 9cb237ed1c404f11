"""The README's state diagrams are the transition tables' (protocols/commit/diagrams.py).
``pytest tests/protocols/commit --rewrite`` regenerates them."""

from __future__ import annotations

from pathlib import Path

from consensuskit.protocols.commit import diagrams, tables
from tests.transcript.datadriven import rewriting

README = Path(__file__).parents[3] / "src/consensuskit/protocols/commit/README.md"


def test_readme_diagrams_are_generated_from_the_tables():
    text = README.read_text()
    fresh = diagrams.updated(text)
    if fresh != text and rewriting():
        README.write_text(fresh)
        text = fresh
    assert fresh == text, "README diagrams are stale: pytest tests/protocols/commit --rewrite"


def test_every_table_rule_is_an_arrow():
    rendered = diagrams.render()
    for title, table in tables.TABLES.items():
        assert f"### {title}" in rendered
        for (state, event), tr in table.items():
            assert f"{state.replace('-', '_')} --> {tr.next.replace('-', '_')}: {event}" in rendered


def test_a_changed_table_changes_the_diagram(monkeypatch):
    before = diagrams.render()
    changed = dict(tables.PARTICIPANT_2PC)
    changed[("uncertain", "commit")] = tables.Transition(("apply",), "committed")
    monkeypatch.setitem(tables.TABLES, "2PC participant", changed)
    assert diagrams.render() != before
