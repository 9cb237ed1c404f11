"""``consensuskit gossip epidemic``: its JSON fields, determinism and exit codes."""

from __future__ import annotations

import json

import pytest

from consensuskit.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


ARGS = (
    "gossip",
    "epidemic",
    "--mode",
    "push",
    "--feedback",
    "--counter",
    "--k",
    "2",
    "--nodes",
    "200",
    "--runs",
    "5",
)


def test_epidemic_json_has_the_papers_figures_each_with_its_spread(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, *ARGS, "--seed", "3", "--json")
    assert code == 0
    doc = json.loads(out)
    for key in ("residue", "traffic", "t_ave", "t_last"):
        assert set(doc[key]) == {"mean", "stdev"}
    assert doc["nodes"] == 200 and doc["runs"] == 5 and doc["k"] == 2 and doc["seed"] == 3
    assert 0.0 <= doc["residue"]["mean"] < 0.5 and doc["traffic"]["mean"] > 1.0
    again = json.loads(run(capsys, *ARGS, "--seed", "3", "--json")[1])
    other = json.loads(run(capsys, *ARGS, "--seed", "4", "--json")[1])
    assert again == doc and other["traffic"] != doc["traffic"]


def test_epidemic_variants_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "gossip",
        "epidemic",
        "--mode",
        "pull",
        "--blind",
        "--coin",
        "--k",
        "3",
        "--nodes",
        "100",
        "--runs",
        "3",
        "--connection-limit",
        "1",
    )
    assert code == 0
    assert "pull blind-coin k=3 L=1" in out and "residue" in out and "t_last" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--mode", "flood"), "mode must be one of push, pull, push-pull"),
        (("--k", "0"), "k must be at least 1"),
        (("--runs", "0"), "runs must be at least 1"),
        (("--nodes", "1"), "nodes must be at least 2"),
        (("--bogus", "1"), "No such option: --bogus"),
    ],
)
def test_epidemic_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], needle: str
) -> None:
    code, _, err = run(capsys, "gossip", "epidemic", *args)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1
