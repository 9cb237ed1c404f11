"""``consensuskit byzantine generals|boundary|vote``: reports, exit codes, bad input."""

from __future__ import annotations

import json

import pytest

from consensuskit.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["byzantine", *args])
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_generals_reports_ic1_ic2_agreement_and_messages(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--n", "7", "--m", "2", "--traitors", "g1,5", "--strategy", "split", "--oral", "--json")
    code, out, _ = run(capsys, "generals", *args)
    doc = json.loads(out)
    assert code == 0
    assert doc["ic1"] is True and doc["ic2"] is True and doc["agreement"] is True
    assert doc["messages"] == doc["expected_messages"] == 156
    assert doc["traitors"] == ["g1", "g5"] and doc["mode"] == "oral"


def test_three_generals_oral_fail_and_signed_agree(capsys: pytest.CaptureFixture[str]) -> None:
    base = ("generals", "--n", "3", "--m", "1", "--traitors", "3", "--strategy", "counterexample", "--json")
    code, out, _ = run(capsys, *base, "--oral")
    doc = json.loads(out)
    assert code == 1 and doc["ic1"] is True and doc["ic2"] is False and doc["agreement"] is False
    code, out, _ = run(capsys, *base, "--signed")
    doc = json.loads(out)
    assert code == 0 and doc["agreement"] is True and doc["forged"] == 1 and doc["scheme"] == "ed25519"


def test_generals_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "generals", "--n", "4", "--traitors", "g3")
    assert code == 0 and "messages: 9 (formula: 9)" in out and "IC1 holds, IC2 holds" in out


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("generals", "--n", "4", "--traitors", "g9"), "unknown general 'g9' in --traitors; valid: g1..g4"),
        (("generals", "--strategy", "bribe"), "unknown strategy 'bribe'; valid: random, split"),
        (("generals", "--order", "charge"), "unknown order 'charge'; valid: attack, retreat"),
        (("generals", "--n", "3", "--m", "2"), "need at least m+2=4 generals"),
        (("generals", "--signed", "--scheme", "rsa"), "unknown signature scheme 'rsa'"),
        (("generals", "--n", "x"), "Invalid value for '--n'"),
        (("generals", "--bogus"), "No such option"),
        (("boundary", "--max-m", "0"), "need --max-m >= 1"),
        (("generals", "--n", "200", "--m", "5"), "at most 1,000,000 are run"),
        (("boundary", "--max-n", "40", "--max-m", "5"), "at most 1,000,000 are run"),
        (("vote", "--attack", "30", "--retreat", "30", "--m", "4"), "at most 1,000,000 are run"),
        (("vote", "--strategy", "bribe"), "unknown strategy 'bribe'"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], text: str
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and text in err


def test_boundary_is_a_table_matching_the_theorem(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "boundary", "--max-n", "7", "--max-m", "2", "--seeds", "2", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["matches_theory"] is True
    agree = {(r["n"], r["m"]): r["agreement"] for r in doc["rows"]}
    assert agree == {(n, m): n > 3 * m for m in (1, 2) for n in range(m + 2, 8)}
    code, out, _ = run(capsys, "boundary", "--max-n", "5", "--max-m", "1", "--seeds", "1")
    assert code == 0 and "matches the theorem" in out and "broken" in out


def test_vote_is_seed_004(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "vote", "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["naive"]["loyal_agree"] is False and doc["interactive"]["loyal_agree"] is True
    assert doc["interactive"]["messages"] == 9 * 64
