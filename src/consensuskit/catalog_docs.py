"""The docs' protocol and service tables, generated from the catalog (``make docs``
rewrites them).

Rules this module owns:
  * a protocol table lives between ``<!-- catalog:protocols -->`` and
    ``<!-- /catalog:protocols -->`` (``<!-- catalog:protocols family=paxos -->`` keeps one
    family), a service table between ``<!-- catalog:services -->`` and
    ``<!-- /catalog:services -->``; everything between the markers is generated,
    everything outside them is left alone;
  * the text is a pure function of the catalog, so a test regenerates every table and
    fails when a document differs (a protocol, service, bug knob or scenario added
    without ``make docs``);
  * ``python -m consensuskit.catalog_docs`` checks (exit 1 and the stale files when a
    table differs), ``--write`` rewrites.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from consensuskit.catalog import Catalog, ProtocolEntry, builtin_catalog
from consensuskit.core.service import ServiceSpec

# The documents holding tables, relative to the repository root.
DOCUMENTS = (
    "README.md",
    "docs/architecture.md",
    "src/consensuskit/protocols/raft/README.md",
    "src/consensuskit/protocols/paxos/README.md",
    "src/consensuskit/protocols/commit/README.md",
    "src/consensuskit/protocols/gossip/README.md",
)
BLOCK = re.compile(
    r"(?P<open><!-- catalog:(?P<kind>protocols|services)(?: family=(?P<family>[\w-]+))? -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- /catalog:(?P=kind) -->)",
    re.DOTALL,
)


def protocol_table(catalog: Catalog, family: str | None = None, link_root: str = "") -> str:
    """A markdown table of the catalog's protocols (of one family if given).

    ``link_root`` is the path from the document to the repository root, for README links.
    """
    entries = [e for e in catalog.protocols() if family is None or e.family == family]
    lines = [
        "| protocol | what it is | bug knobs | scenarios | invariants | survives disk loss |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_row(catalog, entry, link_root) for entry in entries]
    return "\n".join(lines) + "\n"


def _row(catalog: Catalog, entry: ProtocolEntry, link_root: str) -> str:
    spec = entry.spec
    name = f"[`{entry.name}`]({link_root}{entry.readme})" if entry.readme else f"`{entry.name}`"
    bugs = ", ".join(f"`{b}`" for b in spec.bugs) or "—"
    scenarios = len(catalog.scenarios(entry.name))
    checker = f"`{entry.checker}`" if entry.checker else "—"
    disk = "yes" if spec.survives_disk_loss else "no"
    description = " ".join(spec.description.split()).replace("|", "\\|")
    return f"| {name} | {description} | {bugs} | {scenarios} | {checker} | {disk} |"


def service_table(catalog: Catalog) -> str:
    """A markdown table of the catalog's services: what each is, its operations, the
    protocols that serve it, its own bug knobs and whether the simulator runs a monitor
    of its own beside the protocol's checker."""
    lines = [
        "| service | what it is | operations | runs on | bug knobs | its own monitor in the simulator |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_service_row(catalog, service) for service in catalog.services()]
    return "\n".join(lines) + "\n"


def _service_row(catalog: Catalog, service: ServiceSpec) -> str:
    kinds = ", ".join(f"`{kind}`" for kind in service.kinds)
    protocols = ", ".join(f"`{e.name}`" for e in catalog.protocols() if e.spec.serves(service)) or "—"
    bugs = ", ".join(f"`{b}`" for b in service.bugs) or "—"
    monitor = "yes" if service.make_monitor is not None else "—"
    description = " ".join(service.description.split()).replace("|", "\\|")
    return f"| `{service.name}` | {description} | {kinds} | {protocols} | {bugs} | {monitor} |"


def render(text: str, catalog: Catalog, link_root: str = "") -> str:
    """``text`` with every table block regenerated."""

    def block(match: re.Match[str]) -> str:
        if match.group("kind") == "services":
            table = service_table(catalog)
        else:
            table = protocol_table(catalog, match.group("family"), link_root)
        return f"{match.group('open')}{table}{match.group('close')}"

    return BLOCK.sub(block, text)


def link_root_of(document: str) -> str:
    depth = len(Path(document).parts) - 1
    return "../" * depth


def stale_documents(root: Path, catalog: Catalog | None = None, write: bool = False) -> list[str]:
    """The documents whose tables differ from the catalog's (rewritten when ``write``)."""
    catalog = catalog or builtin_catalog()  # the build's own protocols, never a plug-in's
    stale: list[str] = []
    for document in DOCUMENTS:
        path = root / document
        text = path.read_text(encoding="utf-8")
        fresh = render(text, catalog, link_root_of(document))
        if fresh != text:
            stale.append(document)
            if write:
                path.write_text(fresh, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    write = "--write" in args
    root = Path(__file__).resolve().parents[2]  # the repository root of a checkout
    stale = stale_documents(root, write=write)
    for document in stale:
        print(f"{'rewrote' if write else 'stale'}: {document}")
    if stale and not write:
        print("the catalog tables differ from the catalog: run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
