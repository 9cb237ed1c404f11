"""Run a transcript file through a fresh harness (the glue the protocol tests share)."""

from __future__ import annotations

from pathlib import Path

from .datadriven import Arg, Case, parse, run_file
from .harness import Harness


def run_transcript(path: str | Path, protocol: str, *, rewrite: bool | None = None) -> None:
    run_file(path, Harness(protocol=protocol).handle, rewrite=rewrite)


def run_transcript_with_bugs(path: str | Path, protocol: str, bugs: tuple[str, ...]) -> None:
    """Run ``path`` with bug knobs added to its add-nodes; never rewrites.  Raises the
    runner's AssertionError when the output differs from the file's (as a transcript
    that checks a rule must, when the rule is broken)."""
    harness = Harness(protocol=protocol)

    def handle(case: Case) -> str:
        if case.command == "add-nodes":
            case.args = [a for a in case.args if a.key != "bugs"] + [Arg("bugs", bugs, listed=True)]
        return harness.handle(case)

    run_file(path, handle, rewrite=False)


def outputs_with_bugs(path: str | Path, protocol: str, bugs: tuple[str, ...]) -> str:
    """Everything ``path`` prints when run with bug knobs added (no comparison)."""
    harness = Harness(protocol=protocol)
    out: list[str] = []
    for case in parse(Path(path).read_text(encoding="utf-8"), str(path)).cases:
        if case.command == "add-nodes":
            case.args = [a for a in case.args if a.key != "bugs"] + [Arg("bugs", bugs, listed=True)]
        out.append(harness.handle(case))
    return "".join(out)
