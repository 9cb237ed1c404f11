"""What ``consensuskit user|role|auth ...`` do, and the credentials options of ``kv``/``status``
(cli.py only parses options; the HTTP side is ``auth_api.py``).

Rules this module owns:
  * exit codes as everywhere in the CLI: 0 = done, 1 = the cluster refused (exists, not
    found, not allowed, wrong password) or could not be reached, 2 = bad input (one line
    naming the valid choices);
  * credentials: ``--user NAME:PASSWORD`` (or ``$CONSENSUSKIT_USER``) signs in as a user
    (a token is fetched and renewed by the client); ``--admin-token-file PATH`` (or
    ``$CONSENSUSKIT_ADMIN_TOKEN_FILE``) sends the node's admin token, which manages auth
    even while it is disabled; both may be given;
  * a password given neither as ``--password`` nor ``--no-password`` is prompted for
    (twice, hidden) by the CLI; it never appears in output.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consensuskit.client import Client, ClientError, Unavailable

USER_ENV = "CONSENSUSKIT_USER"
ADMIN_TOKEN_FILE_ENV = "CONSENSUSKIT_ADMIN_TOKEN_FILE"
PERMISSIONS = ("read", "write", "readwrite")


class BadInput(ValueError):
    """A usage problem: one line, exit status 2."""


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def parse_user(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise BadInput("--user: expected NAME:PASSWORD (a name, a colon, then the password)")
    return name, password


def credentials(user: str | None, admin_token_file: str | None = None) -> dict[str, Any]:
    """Client options for ``--user`` / ``--admin-token-file`` (or their environment variables)."""
    options: dict[str, Any] = {}
    user = user if user is not None else os.environ.get(USER_ENV)
    if user:
        options["user"], options["password"] = parse_user(user)
    path = admin_token_file if admin_token_file is not None else os.environ.get(ADMIN_TOKEN_FILE_ENV)
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise BadInput(f"--admin-token-file: cannot read {path}: {exc.strerror}") from None
        if not token:
            raise BadInput(f"--admin-token-file: {path} is empty")
        options["admin_token"] = token
    return options


def cli_client(
    endpoints: str,
    user: str | None,
    admin_token_file: str | None = None,
    *,
    timeout: float,
    deadline: float,
    **client_options: Any,
) -> Client:
    """The CLI's client for ``--endpoints`` and the credentials above (``client_options``:
    more ``Client`` options, e.g. a reply quorum); BadInput (exit 2) for bad endpoints or
    credentials."""
    options = credentials(user, admin_token_file)
    try:
        return Client(endpoints, timeout=timeout, deadline=deadline, **options, **client_options)
    except ValueError as exc:
        raise BadInput(f"bad --endpoints: {exc}") from None


def exit_code(exc: ClientError) -> int:
    """2 for a request the server found malformed, 1 for every other refusal."""
    return 2 if exc.status == 400 else 1


# ---------------------------------------------------------------------- verbs
def _revision(doc: Any) -> str:
    return f"ok (auth revision {doc.get('revision')})" if isinstance(doc, dict) else "ok"


def _users_text(doc: Any) -> str:
    lines = []
    for u in doc.get("users", []):
        note = "" if u.get("has_password") else "  (no password: certificate only)"
        lines.append(f"{u['name']}\t{','.join(u.get('roles', [])) or '-'}{note}")
    return "\n".join(lines) or "(no users)"


def _roles_text(doc: Any) -> str:
    lines = []
    for r in doc.get("roles", []):
        perms = ", ".join(f"{p['permission']} {p['prefix']!r}" for p in r.get("permissions", []))
        lines.append(f"{r['name']}\t{perms or '-'}")
    return "\n".join(lines)


def _status_text(doc: Any) -> str:
    return f"auth {'enabled' if doc.get('enabled') else 'disabled'} (revision {doc.get('revision')})"


VERBS: dict[str, tuple[Callable[..., Any], Callable[[Any], str]]] = {
    "user add": (lambda c, a: c.add_user(a["name"], a.get("password")), _revision),
    "user delete": (lambda c, a: c.delete_user(a["name"]), _revision),
    "user passwd": (lambda c, a: c.set_password(a["name"], a.get("password")), _revision),
    "user list": (lambda c, a: c.users(), _users_text),
    "user grant-role": (lambda c, a: c.grant_role(a["name"], a["role"]), _revision),
    "user revoke-role": (lambda c, a: c.revoke_role(a["name"], a["role"]), _revision),
    "role add": (lambda c, a: c.add_role(a["role"]), _revision),
    "role delete": (lambda c, a: c.delete_role(a["role"]), _revision),
    "role grant": (lambda c, a: c.grant_permission(a["role"], a["prefix"], a["permission"]), _revision),
    "role revoke": (lambda c, a: c.revoke_permission(a["role"], a["prefix"]), _revision),
    "role list": (lambda c, a: c.roles(), _roles_text),
    "auth enable": (lambda c, a: c.auth_enable(), lambda d: f"auth enabled (revision {d.get('revision')})"),
    "auth disable": (
        lambda c, a: c.auth_disable(),
        lambda d: f"auth disabled (revision {d.get('revision')})",
    ),
    "auth status": (lambda c, a: c.auth_status(), _status_text),
}


def check_permission(permission: str) -> None:
    if permission not in PERMISSIONS:
        raise BadInput(f"unknown permission {permission!r}; valid: {', '.join(PERMISSIONS)}")


Verbs = dict[str, tuple[Callable[[Client, dict[str, Any]], Any], Callable[[Any], str]]]


def run_verb(
    verbs: Verbs,
    verb: str,
    args: dict[str, Any] | None = None,
    *,
    check_args: Callable[[dict[str, Any]], None] | None = None,
    endpoints: str | None = None,
    user: str | None = None,
    admin_token_file: str | None = None,
    as_json: bool = False,
    timeout: float = 2.0,
    deadline: float = 10.0,
) -> int:
    """Run one verb of ``verbs`` (name -> (call, text)) against the cluster; the exit code.

    The CLI's contract for every admin-style verb: an unknown verb or bad arguments
    (``check_args`` raises BadInput) exit 2; an unreachable cluster or a refusal exit 1
    with one line (``--json``: the error document, with whatever the node said); a
    501 names the missing capability in its message, printed alone.
    """
    from consensuskit.server.commands import default_endpoints  # commands imports this module

    args = dict(args or {})
    if verb not in verbs:
        _err(f"unknown command {verb!r}; valid: {', '.join(verbs)}")
        return 2
    try:
        if check_args is not None:
            check_args(args)
        client = cli_client(
            endpoints or default_endpoints(), user, admin_token_file, timeout=timeout, deadline=deadline
        )
    except BadInput as exc:
        _err(str(exc))
        return 2
    call, text = verbs[verb]
    try:
        with client:
            doc = call(client, args)
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
    except ValueError as exc:  # an empty name
        _err(str(exc))
        return 2
    print(json.dumps(doc, indent=2, default=str) if as_json else text(doc))
    return 0


def _check_auth_args(args: dict[str, Any]) -> None:
    if "permission" in args:
        check_permission(args["permission"])


def auth_command(verb: str, args: dict[str, Any] | None = None, **options: Any) -> int:
    """Run one ``user``/``role``/``auth`` verb; returns the exit code (``run_verb``)."""
    return run_verb(VERBS, verb, args, check_args=_check_auth_args, **options)
