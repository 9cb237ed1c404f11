"""Scenario framework: a scripted simulation that asserts its expected outcome.

A scenario is a function taking a ``ScenarioRun``; it builds a ``Simulation`` through
``run.simulation(...)``, drives it (faults, client requests, scripted message drops)
and states its expectations with ``run.expect(condition, text)``.  It passes exactly
when every expectation holds and no invariant was violated.

A scenario may declare parameters (``params``: name -> what it means, with its
default), which ``scenario run --param NAME=VALUE`` sets; the script reads them with
``run.param(name, default)``.  A parameter is the scenario's own knob (how far a clock
drifts), never a protocol option, and an undeclared one is refused before the run.  A
given value takes the type of the default (a number for a number) and may be held to a
range; one that is not raises ``BadParam`` (the command line: a one-line error, exit 2),
never a failed run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensuskit.sim import InvariantViolation, SimConfig, Simulation


class BadParam(ValueError):
    """A ``--param`` value the scenario cannot run with (module rules)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    title: str
    protocol: str
    description: str
    script: Callable[[ScenarioRun], None]
    params: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Expectation:
    text: str
    passed: bool
    detail: str = ""


@dataclass(slots=True)
class ScenarioRun:
    scenario: Scenario
    seed: int = 0
    trace_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    sim: Simulation | None = None
    expectations: list[Expectation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    violations: list[InvariantViolation] = field(default_factory=list)
    error: str | None = None

    def simulation(self, node_ids: tuple[str, ...], **config: Any) -> Simulation:
        """Create the scenario's simulation (one per run); options merge over defaults."""
        if self.sim is not None:
            raise RuntimeError("a scenario builds one simulation")
        options = dict(config.pop("options", {}))
        options.update(self.options)
        bugs = frozenset(options.pop("bugs", ())) | frozenset(config.pop("bugs", ()))
        cfg = SimConfig(
            bugs=bugs,
            protocol=self.scenario.protocol,
            node_ids=node_ids,
            seed=self.seed,
            trace_path=self.trace_path,
            options=options,
            **config,
        )
        self.sim = Simulation(cfg)
        return self.sim

    def expect(self, condition: bool, text: str, detail: str = "") -> bool:
        self.expectations.append(Expectation(text, bool(condition), detail))
        return bool(condition)

    def param(self, name: str, default: Any, low: float | None = None, below: float | None = None) -> Any:
        """The value given with ``--param name=...``, else ``default``; a number when the
        default is one, within [``low``, ``below``) when they are given (module rules)."""
        if name not in self.scenario.params:
            raise KeyError(f"scenario {self.scenario.id} declares no parameter {name!r}")
        value = self.params.get(name, default)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            kinds, what = ((int, float), "a number") if isinstance(default, float) else ((int,), "an integer")
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise BadParam(f"{name} must be {what}, got {value!r}")
            value = type(default)(value)
            if (low is not None and value < low) or (below is not None and value >= below):
                raise BadParam(f"{name} must be in [{low}, {below}), got {value}")
        return value

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and not self.violations
            and bool(self.expectations)
            and all(e.passed for e in self.expectations)
        )

    def to_json(self) -> dict[str, Any]:
        sim = self.sim
        return {
            "scenario": self.scenario.id,
            "title": self.scenario.title,
            "protocol": self.scenario.protocol,
            "seed": self.seed,
            "params": dict(self.params),
            "passed": self.passed,
            "expectations": [
                {"text": e.text, "passed": e.passed, "detail": e.detail} for e in self.expectations
            ],
            "notes": list(self.notes),
            "invariant_violations": [
                {"name": v.name, "detail": v.detail, "time": v.time} for v in self.violations
            ],
            "error": self.error,
            "trace_sha256": sim.trace.sha256() if sim is not None else None,
            "events": sim.trace.count if sim is not None else 0,
            "virtual_seconds": round(sim.now, 6) if sim is not None else 0.0,
        }


def run_scenario(
    scenario: Scenario,
    *,
    seed: int = 0,
    trace_path: str | None = None,
    options: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> ScenarioRun:
    unknown = sorted(set(params or {}) - set(scenario.params))
    if unknown:
        valid = ", ".join(sorted(scenario.params)) or "none"
        raise ValueError(f"scenario {scenario.id} has no parameter {unknown[0]!r}; valid: {valid}")
    run = ScenarioRun(
        scenario=scenario,
        seed=seed,
        trace_path=trace_path,
        options=dict(options or {}),
        params=dict(params or {}),
    )
    try:
        scenario.script(run)
    except InvariantViolation as violation:
        run.violations.append(violation)
    except AssertionError as exc:
        run.error = f"scenario script failed: {exc}"
    finally:
        if run.sim is not None:
            run.sim.close()
    return run
