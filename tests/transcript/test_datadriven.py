"""The datadriven file format: parsing, rendering and rewriting."""

from __future__ import annotations

import pytest

from .datadriven import DataDrivenError, parse, parse_args, render, run_file

SAMPLE = """\
# a comment
add-nodes 3 voters=(n1, n2) pre_vote=false
----
n1 ready

blank-output
----

multi \\
  line arg=1
some input
----
----
first

after a blank line
----
----

# trailing comment
"""


def test_parse_cases_args_input_and_outputs():
    script = parse(SAMPLE, "sample.txt")
    a, b, c = script.cases
    assert (a.command, a.line, a.expected) == ("add-nodes", 2, "n1 ready\n")
    assert a.positional() == ["3"]
    assert a.keyed() == {"voters": ("n1", "n2"), "pre_vote": ("false",)}
    assert a.listed("voters") and not a.listed("pre_vote")
    assert b.expected == ""
    assert c.directive == "multi  line arg=1" and c.input == "some input"
    assert c.expected == "first\n\nafter a blank line\n"


def test_render_is_the_identity_on_a_well_formed_file():
    assert render(parse(SAMPLE), {}) == SAMPLE


def test_rendering_an_output_with_blank_lines_uses_the_double_separator():
    script = parse("cmd\n----\nold\n")
    out = render(script, {id(script.cases[0]): "a\n\nb\n"})
    assert out == "cmd\n----\n----\na\n\nb\n----\n----\n"
    assert parse(out).cases[0].expected == "a\n\nb\n"


@pytest.mark.parametrize(
    "bad",
    ["cmd\n", "cmd\n----\n----\nunterminated\n", "cmd \\\n"],
)
def test_malformed_files_are_errors_with_a_position(bad: str):
    with pytest.raises(DataDrivenError, match=r"<string>:1"):
        parse(bad)


def test_parse_args_rejects_garbage():
    assert parse_args("a b=c d=(1,2)")[2].vals == ("1", "2")
    assert parse_args("e=()")[0].vals == ()


def test_mismatch_reports_file_line_and_diff(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("echo hi\n----\nhello\n")
    with pytest.raises(AssertionError) as info:
        run_file(path, lambda case: "hi\n", rewrite=False)
    msg = str(info.value)
    assert f"{path}:1" in msg and "-hello" in msg and "+hi" in msg


def test_rewrite_replaces_outputs_and_keeps_the_narrative(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("# why\necho a\n----\nstale\n\n# more\necho b c\n----\n")
    monkeypatch.setenv("CONSENSUSKIT_REWRITE", "1")
    run_file(path, lambda case: " ".join(case.positional()) + "\n")
    assert path.read_text() == "# why\necho a\n----\na\n\n# more\necho b c\n----\nb c\n"
    monkeypatch.delenv("CONSENSUSKIT_REWRITE")
    run_file(path, lambda case: " ".join(case.positional()) + "\n")  # now it passes as is
