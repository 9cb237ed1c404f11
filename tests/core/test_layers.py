"""Guard rails of the layering (docs/architecture.md), read from the source with ``ast``:
no module under test is imported to judge it.

Rules held here:
  * core/ imports nothing of consensuskit above itself;
  * protocols/ import only consensuskit.core, the state-machine interface (the
    consensuskit.statemachines package itself, its ``base`` and the client-session
    contract ``sessions``), their own family package and protocols/common/;
    and no sockets, asyncio, threads, processes, ``time``, ``os``, logging or global
    ``random`` (a ``random.Random`` handed in is fine, building one is not);
  * check/ imports core, check, statemachines and the protocols' public surface only;
  * outside a protocol's own package (and the catalog, which builds the specs) a protocol
    is reached through its public surface: the package itself, its ``messages`` /
    ``*_messages`` modules (wire types and the records they persist) and ``ballot``;
  * no module imports another package's ``_private`` name or module, nor reads a
    ``_private`` attribute that only another package defines (``sim._clocks``);
  * the catalog sits above the layers it composes: core, protocols, statemachines,
    services, check and scenarios never import it, and it imports nothing that imports
    it (sim, server, scenarios, cli, sweep) at import time, so no cycle closes; sim/ and
    server/ may import it for their default registry;
  * message tags never collide, and each module's tags lie in the range its docstring
    documents ("Tags 10-29 belong to Raft"); documented ranges do not overlap.

Each rule is a function of (module name, source) so a test can feed it a synthetic bad
module and watch it fail.
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import consensuskit

SRC = Path(consensuskit.__file__).parent

# Imports the services work (issue 11, item 1) removes: a log protocol then receives its
# state machine from its factory.  Delete an entry when its import goes; add none.
PENDING_STATE_MACHINE_IMPORTS: set[tuple[str, str]] = set()
# The state-machine interface a protocol may use: the package (StateMachine and the
# default factory), its base module, and the client-session contract (``refusal``).
STATE_MACHINE_INTERFACE = ("consensuskit.statemachines.base", "consensuskit.statemachines.sessions")

PROTOCOLS_COMMON = "consensuskit.protocols.common"  # shared mechanics every protocol may use
FORBIDDEN_IN_PROTOCOLS = {
    "socket", "ssl", "selectors", "asyncio", "threading", "multiprocessing", "concurrent",
    "subprocess", "time", "datetime", "os", "logging", "secrets", "uuid",
}  # fmt: skip
PUBLIC_PROTOCOL_MODULE = re.compile(r"^(messages|\w+_messages|ballot)$")
TAG_RANGE_DOC = re.compile(r"\bTags? (\d+)(?:-(\d+))? belongs? to\b")


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # absolute module imported from (or imported)
    names: tuple[str, ...]  # names taken from it ("from m import a, b"); () for "import m"
    top_level: bool  # executed at import time (not in a function, nor under TYPE_CHECKING)
    line: int


# ------------------------------------------------------------------ reading sources
def module_name(path: Path) -> str:
    """``consensuskit.core.env``; a package's own module keeps ``.__init__`` so relative
    imports resolve against the package."""
    return ".".join(path.relative_to(SRC.parent).with_suffix("").parts)


@functools.cache
def source_modules() -> tuple[tuple[str, str], ...]:
    return tuple((module_name(path), path.read_text()) for path in sorted(SRC.rglob("*.py")))


@functools.cache  # one parse per module for all the rules
def imports(module: str, source: str) -> tuple[Import, ...]:
    """Every import of ``source`` with relative imports resolved against ``module``."""
    found: list[Import] = []
    tree = ast.parse(source)

    def visit(node: ast.AST, top_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top_level and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = False
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, (), top_level, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module.split(".")[:-1]
                    package = package[: len(package) - (child.level - 1)]
                    base = ".".join([*package, base] if base else package)
                found.append(Import(base, tuple(a.name for a in child.names), top_level, child.lineno))
            visit(child, inner)

    visit(tree, True)
    return tuple(found)


def is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def owner(module: str) -> str:
    """The package a module belongs to for privacy: a protocol family, else the top package."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "protocols":
        return ".".join(parts[:3])
    return ".".join(parts[:2])


# ---------------------------------------------------------------------------- rules
def core_violations(module: str, source: str) -> list[str]:
    if not is_under(module, "consensuskit.core"):
        return []
    return [
        f"{module}:{i.line} imports {i.module}"
        for i in imports(module, source)
        if is_under(i.module, "consensuskit") and not is_under(i.module, "consensuskit.core")
    ]


def protocol_import_violations(module: str, source: str) -> list[str]:
    if not is_under(module, "consensuskit.protocols") or module == "consensuskit.protocols.__init__":
        return []
    family = owner(module)
    allowed = ("consensuskit.core", *STATE_MACHINE_INTERFACE, family, PROTOCOLS_COMMON)
    bad: list[str] = []
    for i in imports(module, source):
        target = i.module
        if target == "consensuskit" or target == "consensuskit.protocols":
            target = f"{target}.{i.names[0]}" if i.names else target
        if not is_under(target, "consensuskit") or target == "consensuskit.statemachines":
            continue
        if any(is_under(target, a) for a in allowed) or (module, target) in PENDING_STATE_MACHINE_IMPORTS:
            continue
        bad.append(f"{module}:{i.line} imports {target}")
    return bad


def protocol_io_violations(module: str, source: str) -> list[str]:
    """Forbidden modules, and ``random`` used other than as the type of a handed-in rng."""
    if not is_under(module, "consensuskit.protocols"):
        return []
    bad = [
        f"{module}:{i.line} imports {i.module}"
        for i in imports(module, source)
        if i.module.split(".")[0] in FORBIDDEN_IN_PROTOCOLS
    ]
    tree = ast.parse(source)
    random_aliases = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "random"
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            bad += [f"{module}:{node.lineno} from random import {a.name}"
                    for a in node.names if a.name != "Random"]  # fmt: skip
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in random_aliases and node.attr != "Random":
                bad.append(f"{module}:{node.lineno} global random.{node.attr}")
        elif isinstance(node, ast.Call):
            func = node.func
            builds_rng = (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                          and func.value.id in random_aliases and func.attr == "Random")  # fmt: skip
            if builds_rng:
                bad.append(f"{module}:{node.lineno} builds its own random.Random (use env.rng)")
    return bad


def check_import_violations(module: str, source: str) -> list[str]:
    if not is_under(module, "consensuskit.check"):
        return []
    allowed = tuple(f"consensuskit.{p}" for p in ("core", "check", "statemachines", "protocols"))
    return [
        f"{module}:{i.line} imports {i.module}"
        for i in imports(module, source)
        if is_under(i.module, "consensuskit") and not any(is_under(i.module, a) for a in allowed)
    ]


def public_protocol_violations(module: str, source: str) -> list[str]:
    """Outside its own package (and the catalog) a protocol is reached by its public surface."""
    if is_under(module, "consensuskit.protocols") or module == "consensuskit.catalog":
        return []
    bad: list[str] = []
    for i in imports(module, source):
        parts = i.module.split(".")
        if len(parts) <= 3 or parts[:2] != ["consensuskit", "protocols"]:
            continue  # not a protocol, or the family package itself
        if len(parts) > 4 or not PUBLIC_PROTOCOL_MODULE.match(parts[3]):
            bad.append(f"{module}:{i.line} imports protocol internals {i.module}")
    return bad


def private_name_violations(module: str, source: str) -> list[str]:
    bad: list[str] = []
    mine = owner(module)
    for i in imports(module, source):
        if not is_under(i.module, "consensuskit") or is_under(i.module, mine):
            continue
        candidates = [*i.module.split(".")] + [n for n in i.names if n != "*"]
        if any(part.startswith("_") and not part.startswith("__") for part in candidates):
            bad.append(f"{module}:{i.line} reads a private name of {i.module}: {', '.join(i.names)}")
    return bad


BELOW_CATALOG = ("core", "protocols", "statemachines", "services", "check", "scenarios")
CATALOG_USERS = ("sim", "server", "scenarios", "cli", "sweep")  # import it: never eagerly back


def catalog_violations(module: str, source: str) -> list[str]:
    if module == "consensuskit.catalog":
        return [
            f"{module}:{i.line} imports {i.module} at import time (it imports the catalog: a cycle)"
            for i in imports(module, source)
            if i.top_level and any(is_under(i.module, f"consensuskit.{user}") for user in CATALOG_USERS)
        ]
    if not any(is_under(module, f"consensuskit.{layer}") for layer in BELOW_CATALOG):
        return []
    return [f"{module}:{i.line} imports the catalog" for i in imports(module, source) if is_catalog(i)]


def is_catalog(i: Import) -> bool:
    return is_under(i.module, "consensuskit.catalog") or (i.module == "consensuskit" and "catalog" in i.names)


RULES = {  # the module docstring states each rule
    "core-below-all": core_violations,
    "protocol-imports": protocol_import_violations,
    "protocol-no-io": protocol_io_violations,
    "check-imports": check_import_violations,
    "public-surface": public_protocol_violations,
    "private-names": private_name_violations,
    "catalog-on-top": catalog_violations,
}


@pytest.mark.parametrize("rule", RULES)
def test_the_tree_keeps_the_rule(rule: str) -> None:
    offenders = [v for module, source in source_modules() for v in RULES[rule](module, source)]
    assert not offenders, "\n".join(offenders)


# ---------------------------------------------------- each guard can fail: bad sources
BAD_SOURCES = [
    ("core-below-all", "consensuskit.core.thing",
     "from consensuskit.sim import Simulation\n"),
    ("core-below-all", "consensuskit.core.thing",
     "def f():\n    import consensuskit.catalog\n"),
    ("protocol-imports", "consensuskit.protocols.raft.x",
     "from consensuskit.check.raft import RaftChecker\n"),
    ("protocol-imports", "consensuskit.protocols.raft.x",
     "from consensuskit.protocols.paxos.ballot import Ballot\n"),
    ("protocol-imports", "consensuskit.protocols.raft.x",
     "from consensuskit import sim\n"),
    ("protocol-imports", "consensuskit.protocols.zab.x",
     "from consensuskit.statemachines.kv import KVStateMachine\n"),
    ("protocol-no-io", "consensuskit.protocols.raft.x", "import time\n"),
    ("protocol-no-io", "consensuskit.protocols.raft.x",
     "import asyncio.events\n"),
    ("protocol-no-io", "consensuskit.protocols.raft.x",
     "from socket import socket\n"),
    ("protocol-no-io", "consensuskit.protocols.raft.x",
     "def f():\n    import logging\n"),
    ("protocol-no-io", "consensuskit.protocols.raft.x",
     "import os, threading\n"),
    ("protocol-no-io", "consensuskit.protocols.raft.x",
     "import random\ndef f():\n    return random.random()\n"),
    ("protocol-no-io", "consensuskit.protocols.raft.x",
     "import random as r\nx = r.choice([1, 2])\n"),
    ("protocol-no-io", "consensuskit.protocols.raft.x",
     "from random import randint\n"),
    ("protocol-no-io", "consensuskit.protocols.raft.x",
     "import random\nrng = random.Random(7)\n"),
    ("check-imports", "consensuskit.check.x",
     "from consensuskit.sim import Simulation\n"),
    ("public-surface", "consensuskit.check.raft",
     "from consensuskit.protocols.raft.node import SNAPSHOT_KEY\n"),
    ("public-surface", "consensuskit.scenarios.x",
     "import consensuskit.protocols.paxos.multi_node\n"),
    ("private-names", "consensuskit.check.x",
     "from consensuskit.protocols.raft.messages import _encode\n"),
    ("private-names", "consensuskit.server.x",
     "from consensuskit.sim._helpers import thing\n"),
    ("private-names", "consensuskit.protocols.raft.x",
     "from consensuskit.protocols.paxos.quorum import _majority\n"),
    ("catalog-on-top", "consensuskit.catalog",
     "from consensuskit.scenarios.raft import SCENARIOS\n"),
    ("catalog-on-top", "consensuskit.catalog",
     "from consensuskit.sim import Simulation\n"),
    ("catalog-on-top", "consensuskit.check.x",
     "def f():\n    from consensuskit.catalog import default_registry\n"),
    ("catalog-on-top", "consensuskit.protocols.raft.x",
     "import consensuskit.catalog\n"),
    ("catalog-on-top", "consensuskit.scenarios.x",
     "from consensuskit import catalog\n"),
]  # fmt: skip

GOOD_SOURCES = [
    ("protocol-imports", "consensuskit.protocols.raft.x",
     "from consensuskit.core.env import Env\nfrom .messages import LogEntry\n"
     "from consensuskit.statemachines.base import StateMachine\n"
     "from consensuskit.statemachines import default_state_machine\n"
     "from consensuskit.protocols.common.replies import reply\n"),
    ("protocol-no-io", "consensuskit.protocols.raft.x",
     "import random\ndef f(rng: random.Random) -> float:\n    return rng.random()\n"),
    ("public-surface", "consensuskit.check.raft",
     "from consensuskit.protocols.raft import SNAPSHOT_KEY\n"
     "from consensuskit.protocols.paxos.basic_messages import acceptor_key\n"),
    ("private-names", "consensuskit.protocols.raft.node",
     "from consensuskit.protocols.raft.log import _internal\n"),
    ("catalog-on-top", "consensuskit.sim.x",
     "from consensuskit.catalog import default_registry\n"),
    ("catalog-on-top", "consensuskit.catalog",
     "def scenarios():\n    from consensuskit.scenarios import raft\n"),
    ("catalog-on-top", "consensuskit.catalog",
     "from typing import TYPE_CHECKING\n"
     "if TYPE_CHECKING:\n    from consensuskit.scenarios import Scenario\n"),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "module", "source"), BAD_SOURCES)
def test_each_guard_catches_a_bad_module(rule: str, module: str, source: str) -> None:
    assert RULES[rule](module, source)


@pytest.mark.parametrize(("rule", "module", "source"), GOOD_SOURCES)
def test_each_guard_lets_a_good_module_pass(rule: str, module: str, source: str) -> None:
    assert not RULES[rule](module, source)


def test_relative_imports_resolve_against_the_package() -> None:
    assert [i.module for i in imports("consensuskit.protocols.raft.node", "from ..paxos import x\n")] == [
        "consensuskit.protocols.paxos"
    ]
    assert [i.module for i in imports("consensuskit.core.__init__", "from .env import Env\n")] == [
        "consensuskit.core.env"
    ]


# ------------------------------------------------------------ private attributes
def private_definitions(source: str) -> set[str]:
    """The ``_names`` a module defines: functions, classes, variables, ``__slots__``
    entries and ``self._x = ...`` (a write to another object's ``_x`` defines nothing)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple | ast.List):
            strings = (e.value for e in node.value.elts if isinstance(e, ast.Constant))
            names.update(v for v in strings if isinstance(v, str))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def private_attribute_violations(modules: list[tuple[str, str]]) -> list[str]:
    """``x._name`` read or written (x not self/cls) where only other packages define ``_name``."""
    owners: dict[str, set[str]] = {}
    for module, source in modules:
        for name in private_definitions(source):
            owners.setdefault(name, set()).add(owner(module))
    bad: list[str] = []
    for module, source in modules:
        mine = owner(module)
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Attribute) or node.attr not in owners or mine in owners[node.attr]:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            bad.append(f"{module}:{node.lineno} uses .{node.attr} of {', '.join(sorted(owners[node.attr]))}")
    return bad


def test_no_package_reads_another_packages_private_attributes() -> None:
    assert not private_attribute_violations(list(source_modules()))


def test_the_private_attribute_guard_can_fail() -> None:
    sim = ("consensuskit.sim.simulation", "class Sim:\n    def __init__(self):\n        self._clocks = {}\n")
    storage = ("consensuskit.core.storage", "class S:\n    __slots__ = ('_log',)\n")
    reads_clocks = "def f(sim):\n    return sim._clocks\n"
    assert private_attribute_violations([sim, ("consensuskit.scenarios.x", reads_clocks)]) == [
        "consensuskit.scenarios.x:2 uses ._clocks of consensuskit.sim"
    ]
    writes_log = ("consensuskit.server.wal", "def f(s):\n    s._log = []\n")
    assert private_attribute_violations([storage, writes_log])
    assert private_attribute_violations([storage, ("consensuskit.check.x", "def f(s):\n    return s._log\n")])
    assert not private_attribute_violations([sim, ("consensuskit.sim.x", reads_clocks)])


# --------------------------------------------------------------------- message tags
@dataclass(frozen=True, slots=True)
class Tagged:
    tag: int
    cls: str
    module: str


def message_tags(module: str, source: str) -> list[Tagged]:
    """Every ``@message(N)`` class of a source, read without importing it."""
    found: list[Tagged] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for deco in node.decorator_list:
            if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name) and deco.func.id == "message"
                    and deco.args and isinstance(deco.args[0], ast.Constant)):  # fmt: skip
                found.append(Tagged(deco.args[0].value, node.name, module))
    return found


def documented_range(source: str) -> range | None:
    doc = ast.get_docstring(ast.parse(source)) or ""
    match = TAG_RANGE_DOC.search(doc)
    if match is None:
        return None
    low = int(match.group(1))
    return range(low, int(match.group(2) or low) + 1)


def tag_violations(modules: list[tuple[str, str]]) -> list[str]:
    bad: list[str] = []
    seen: dict[int, Tagged] = {}
    ranges: dict[str, range] = {}
    for module, source in modules:
        tagged = message_tags(module, source)
        if not tagged:
            continue
        documented = documented_range(source)
        if documented is None:
            bad.append(f"{module} registers messages but documents no range ('Tags A-B belong to ...')")
            continue
        ranges[module] = documented
        for t in tagged:
            if t.tag in seen:
                other = seen[t.tag]
                bad.append(f"tag {t.tag}: {other.module}.{other.cls} and {t.module}.{t.cls}")
            seen[t.tag] = t
            if t.tag not in documented:
                bad.append(f"{module}.{t.cls} has tag {t.tag}, outside its range {documented.start}-"
                           f"{documented.stop - 1}")  # fmt: skip
    owners = sorted(ranges.items(), key=lambda kv: kv[1].start)
    for (a, ra), (b, rb) in itertools.pairwise(owners):
        if rb.start < ra.stop:
            bad.append(f"ranges overlap: {a} {ra.start}-{ra.stop - 1} and {b} {rb.start}-{rb.stop - 1}")
    return bad


def test_message_tags_never_collide_and_stay_in_their_documented_ranges() -> None:
    assert not tag_violations(list(source_modules()))


def test_every_message_of_every_catalog_protocol_was_seen_by_the_scan() -> None:
    """Import every catalog protocol (building the catalog imports their modules) and check
    the runtime registry holds exactly the tags the source scan found, so no message
    escapes the range check by registering some other way."""
    from consensuskit.catalog import default_catalog
    from consensuskit.core.messages import registered_messages

    for entry in default_catalog().protocols():
        assert entry.spec.make_node.__module__.startswith("consensuskit.protocols.")
    scanned = {t.tag: f"{t.module}.{t.cls}" for m, s in source_modules() for t in message_tags(m, s)}
    registered = {
        tag: f"{cls.__module__}.{cls.__name__}"
        for tag, cls in registered_messages().items()
        if cls.__module__.startswith("consensuskit.")
    }
    assert registered.items() <= scanned.items()


BAD_TAG_SOURCES = [
    # the same tag twice, in two protocols
    [("consensuskit.protocols.a.messages", '"""Tags 1-5 belong to A."""\n@message(3)\nclass X: ...\n'),
     ("consensuskit.protocols.b.messages", '"""Tags 6-9 belong to B."""\n@message(3)\nclass Y: ...\n')],
    # a tag outside the documented range
    [("consensuskit.protocols.a.messages", '"""Tags 1-5 belong to A."""\n@message(7)\nclass X: ...\n')],
    # no documented range
    [("consensuskit.protocols.a.messages", '"""A."""\n@message(2)\nclass X: ...\n')],
    # overlapping ranges
    [("consensuskit.protocols.a.messages", '"""Tags 1-5 belong to A."""\n@message(1)\nclass X: ...\n'),
     ("consensuskit.protocols.b.messages", '"""Tags 5-9 belong to B."""\n@message(6)\nclass Y: ...\n')],
]  # fmt: skip


@pytest.mark.parametrize("modules", BAD_TAG_SOURCES)
def test_the_tag_guard_can_fail(modules: list[tuple[str, str]]) -> None:
    assert tag_violations(modules)
