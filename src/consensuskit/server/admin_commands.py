"""The ``consensuskit member list|add|remove`` and ``consensuskit leader transfer`` verbs:
the HTTP admin routes from the command line.

Rules this module owns (with cli.py's exit codes: 0 done, 1 refused or unreachable,
2 bad input):
  * a route whose capability the cluster's protocol lacks (501 ``not-implemented``,
    docs/server.md) is one line on stderr naming the capability, exit 1 -- never a
    traceback; ``--json`` prints the error document instead;
  * membership changes and transfers need the admin token (``--admin-token-file`` or
    $CONSENSUSKIT_ADMIN_TOKEN_FILE); listing the members does not.
"""

from __future__ import annotations

from typing import Any

from consensuskit.server.auth_commands import Verbs, run_verb


def _members_text(doc: Any) -> str:
    lines = [f"leader: {doc.get('leader') or '-'}"]
    for member in doc.get("members", []):
        kind = "voter" if member.get("voter") else "learner"
        lines.append(f"{member['id']}\t{kind}\t{member.get('client_url') or '-'}")
    return "\n".join(lines)


def _change_text(doc: Any) -> str:
    voters = ",".join(doc.get("voters", []))
    return f"{doc.get('change')} {doc.get('id')}: committed at index {doc.get('index')}; voters {voters}"


VERBS: Verbs = {
    "member-list": (lambda c, a: c.members(), _members_text),
    "member-add": (
        lambda c, a: c.add_member(a["id"], **{k: v for k, v in a.items() if k != "id" and v is not None}),
        _change_text,
    ),
    "member-remove": (lambda c, a: c.remove_member(a["id"], force=bool(a.get("force"))), _change_text),
    "leader-transfer": (
        lambda c, a: c.transfer_leadership(a.get("to")),
        lambda doc: f"leader: {doc.get('leader')} ({doc.get('leader_url')})",
    ),
}


def admin_command(verb: str, args: dict[str, Any] | None = None, **options: Any) -> int:
    """Run one admin verb; returns the exit code (``auth_commands.run_verb``)."""
    return run_verb(VERBS, verb, args, **options)
