"""A tiny datadriven runner in the style of cockroachdb/datadriven (etcd-io/raft's tests).

Rules this module owns (the file format):
  * a test case is a directive line ``command arg key=value key=(a, b)``, optional input
    lines, a ``----`` line, then the expected output up to the first blank line;
  * output that itself contains blank lines is written between a double separator:
    ``----`` ``----`` <output> ``----`` ``----``;
  * a directive may continue on the next line after a trailing ``\\``;
  * lines starting with ``#`` and blank lines between cases are kept verbatim: they are
    the narrative of the file and survive a rewrite untouched;
  * a rewrite replaces each case's expected output by the actual one and changes nothing
    else, so ``git diff`` after a rewrite shows exactly the behaviour that changed.

The runner knows no command: a ``handler(case) -> str`` does the work.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SEPARATOR = "----"
# Set to "1" to regenerate expectations in place (the pytest option --rewrite sets it too).
REWRITE_ENV = "CONSENSUSKIT_REWRITE"

_ARG = re.compile(r"\s*([^\s=()]+)(?:=(\([^)]*\)|[^\s]*))?")


class DataDrivenError(ValueError):
    """The file is malformed (not a failing expectation)."""


@dataclass(slots=True, frozen=True)
class Arg:
    key: str
    vals: tuple[str, ...] = ()
    listed: bool = False  # written as key=(a, b): a list even of one value

    def value(self) -> str:
        if len(self.vals) != 1:
            raise DataDrivenError(f"argument {self.key} needs exactly one value, got {self.vals}")
        return self.vals[0]


@dataclass(slots=True)
class Case:
    path: str
    line: int  # 1-based line of the directive
    command: str
    args: list[Arg]
    directive: str  # the directive as written (continuations joined)
    raw_directive: list[str]  # the directive's lines as written
    input: str
    expected: str

    @property
    def pos(self) -> str:
        return f"{self.path}:{self.line}"

    def has(self, key: str) -> bool:
        return any(a.key == key for a in self.args)

    def get(self, key: str, default: str | None = None) -> str | None:
        for a in self.args:
            if a.key == key and a.vals:
                return a.value()
        return default

    def listed(self, key: str) -> bool:
        return any(a.key == key and a.listed for a in self.args)

    def positional(self) -> list[str]:
        """Arguments written without ``=``, in order."""
        return [a.key for a in self.args if not a.vals]

    def keyed(self) -> dict[str, tuple[str, ...]]:
        return {a.key: a.vals for a in self.args if a.vals}


@dataclass(slots=True)
class Chunk:
    """Verbatim text (comments, blank lines) or one case."""

    text: str = ""
    case: Case | None = None


@dataclass(slots=True)
class Script:
    path: str
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def cases(self) -> list[Case]:
        return [c.case for c in self.chunks if c.case is not None]


def parse_args(text: str) -> list[Arg]:
    args: list[Arg] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _ARG.match(text, pos)
        if m is None or m.end() == pos:
            raise DataDrivenError(f"cannot parse arguments at {text[pos:]!r}")
        key, val = m.group(1), m.group(2)
        if val is None:
            args.append(Arg(key))
        elif val.startswith("("):
            inner = val[1:-1].strip()
            args.append(Arg(key, tuple(v.strip() for v in inner.split(",")) if inner else (), listed=True))
        else:
            args.append(Arg(key, (val,)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return args


def parse(text: str, path: str = "<string>") -> Script:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    script = Script(path)
    i = 0
    verbatim: list[str] = []

    def flush_verbatim() -> None:
        if verbatim:
            script.chunks.append(Chunk(text="\n".join(verbatim) + "\n"))
            verbatim.clear()

    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            verbatim.append(line)
            i += 1
            continue
        flush_verbatim()
        start = i
        raw = [line]
        directive = line
        while directive.endswith("\\"):
            i += 1
            if i >= len(lines):
                raise DataDrivenError(f"{path}:{start + 1}: continuation at end of file")
            raw.append(lines[i])
            directive = directive[:-1] + " " + lines[i].strip()
        i += 1
        inputs: list[str] = []
        while i < len(lines) and lines[i] != SEPARATOR:
            if not lines[i].strip():
                raise DataDrivenError(f"{path}:{start + 1}: expected {SEPARATOR} after {directive!r}")
            inputs.append(lines[i])
            i += 1
        if i >= len(lines):
            raise DataDrivenError(f"{path}:{start + 1}: expected {SEPARATOR} after {directive!r}")
        i += 1  # the separator
        out: list[str] = []
        if i < len(lines) and lines[i] == SEPARATOR:
            # Double separator: everything up to the closing "----\n----".
            i += 1
            while True:
                if i + 1 >= len(lines):
                    raise DataDrivenError(f"{path}:{start + 1}: unterminated {SEPARATOR} {SEPARATOR} block")
                if lines[i] == SEPARATOR and lines[i + 1] == SEPARATOR:
                    i += 2
                    break
                out.append(lines[i])
                i += 1
            expected = "\n".join(out) + "\n" if out else ""
        else:
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            expected = "\n".join(out) + "\n" if out else ""
        parts = directive.strip().split(None, 1)
        case = Case(
            path=path,
            line=start + 1,
            command=parts[0],
            args=parse_args(parts[1]) if len(parts) > 1 else [],
            directive=directive.strip(),
            raw_directive=raw,
            input="\n".join(inputs),
            expected=expected,
        )
        script.chunks.append(Chunk(case=case))
    flush_verbatim()
    return script


def render_case(case: Case, output: str) -> str:
    """The case as written to a file, with ``output`` as its expectation."""
    head = "\n".join(case.raw_directive) + "\n"
    if case.input:
        head += case.input + "\n"
    if output and not output.endswith("\n"):
        output += "\n"
    if any(not line.strip() for line in output.split("\n")[:-1]):
        return f"{head}{SEPARATOR}\n{SEPARATOR}\n{output}{SEPARATOR}\n{SEPARATOR}\n"
    return f"{head}{SEPARATOR}\n{output}"


def render(script: Script, outputs: dict[int, str]) -> str:
    """The file with each case's output replaced by ``outputs[id(case)]`` when given.

    A case is followed by a blank line unless the next chunk already starts with one."""
    parts: list[str] = []
    for idx, chunk in enumerate(script.chunks):
        if chunk.case is None:
            parts.append(chunk.text)
            continue
        case = chunk.case
        parts.append(render_case(case, outputs.get(id(case), case.expected)))
        nxt = script.chunks[idx + 1] if idx + 1 < len(script.chunks) else None
        if nxt is not None and not (nxt.case is None and nxt.text.startswith("\n")):
            parts.append("\n")
    return "".join(parts)


def rewriting() -> bool:
    return os.environ.get(REWRITE_ENV, "") not in ("", "0")


def normalize(output: str) -> str:
    """Trailing spaces and trailing newlines are not part of an expectation."""
    lines = [line.rstrip() for line in output.rstrip("\n").split("\n")]
    text = "\n".join(lines)
    return text + "\n" if text else ""


def run_file(path: str | Path, handler: Callable[[Case], str], *, rewrite: bool | None = None) -> None:
    """Run every case of ``path`` through ``handler``; on the first mismatch raise an
    AssertionError with the file position and a diff.  With ``rewrite`` (default: the
    REWRITE_ENV variable) the file is rewritten with the actual outputs instead."""
    path = Path(path)
    rewrite = rewriting() if rewrite is None else rewrite
    script = parse(path.read_text(encoding="utf-8"), str(path))
    outputs: dict[int, str] = {}
    for case in script.cases:
        actual = normalize(handler(case))
        if rewrite:
            outputs[id(case)] = actual
            continue
        if actual != normalize(case.expected):
            diff = "".join(
                difflib.unified_diff(
                    normalize(case.expected).splitlines(keepends=True),
                    actual.splitlines(keepends=True),
                    "expected",
                    "actual",
                )
            )
            raise AssertionError(
                f"{case.pos}: output of {case.directive!r} differs "
                f"(rerun with {REWRITE_ENV}=1 or --rewrite to accept):\n{diff}"
            )
    if rewrite:
        new = render(script, outputs)
        if new != path.read_text(encoding="utf-8"):
            path.write_text(new, encoding="utf-8")
