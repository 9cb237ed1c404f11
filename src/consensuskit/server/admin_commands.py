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

import json
from collections.abc import Callable
from typing import Any

from consensuskit.client import Client, ClientError, Unavailable
from consensuskit.server.auth_commands import BadInput, _err, cli_client, exit_code


def _members_text(doc: Any) -> str:
    lines = [f"leader: {doc.get('leader') or '-'}"]
    for member in doc.get("members", []):
        kind = "voter" if member.get("voter") else "learner"
        lines.append(f"{member['id']}\t{kind}\t{member.get('client_url') or '-'}")
    return "\n".join(lines)


def _change_text(doc: Any) -> str:
    voters = ",".join(doc.get("voters", []))
    return f"{doc.get('change')} {doc.get('id')}: committed at index {doc.get('index')}; voters {voters}"


VERBS: dict[str, tuple[Callable[[Client, dict[str, Any]], Any], Callable[[Any], str]]] = {
    "member-list": (lambda c, a: c.members(), _members_text),
    "member-add": (
        lambda c, a: c.add_member(a["id"], **{k: v for k, v in a.items() if k != "id" and v is not None}),
        _change_text,
    ),
    "member-remove": (lambda c, a: c.remove_member(a["id"]), _change_text),
    "leader-transfer": (
        lambda c, a: c.transfer_leadership(a.get("to")),
        lambda doc: f"leader: {doc.get('leader')} ({doc.get('leader_url')})",
    ),
}


def admin_command(
    verb: str,
    args: dict[str, Any] | None = None,
    *,
    endpoints: str | None = None,
    user: str | None = None,
    admin_token_file: str | None = None,
    as_json: bool = False,
    timeout: float = 2.0,
    deadline: float = 10.0,
) -> int:
    """Run one admin verb; returns the exit code."""
    from consensuskit.server.commands import default_endpoints  # commands imports auth_commands

    if verb not in VERBS:
        _err(f"unknown command {verb!r}; valid: {', '.join(VERBS)}")
        return 2
    try:
        client = cli_client(
            endpoints or default_endpoints(), user, admin_token_file, timeout=timeout, deadline=deadline
        )
    except BadInput as exc:
        _err(str(exc))
        return 2
    call, text = VERBS[verb]
    try:
        with client:
            doc = call(client, dict(args or {}))
    except Unavailable as exc:
        if as_json:
            print(json.dumps({"error": "unavailable", "message": exc.message}, indent=2))
        else:
            _err(exc.message)
        return 1
    except ClientError as exc:
        if as_json:
            error = {**exc.details, "error": exc.code, "message": exc.message, "status": exc.status}
            print(json.dumps(error, indent=2))
        elif exc.status == 501:  # the message names the protocol and the missing capability
            _err(exc.message)
        else:
            _err(f"{exc.code}: {exc.message}")
        return exit_code(exc)
    print(json.dumps(doc, indent=2, default=str) if as_json else text(doc))
    return 0
