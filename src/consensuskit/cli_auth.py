"""The ``consensuskit user|role|auth`` verbs, and the ``--user`` option of ``kv``/``status``
(typer wiring only; what they do is ``server/auth_commands.py``).

Rules this module owns: those of cli.py (exit 0 done, 1 refused or unreachable, 2 bad
input as one line naming the valid choices); a password is prompted for, hidden and
twice, unless ``--password`` or ``--no-password`` is given.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

EndpointsOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoints",
        "-e",
        help="Comma list of client URLs (default $CONSENSUSKIT_ENDPOINTS or 127.0.0.1:7100-7102).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
UserOpt = Annotated[
    str | None,
    typer.Option("--user", help="NAME:PASSWORD when client auth is enabled (default $CONSENSUSKIT_USER)."),
]

user_app = typer.Typer(help="Users of client auth (docs/server.md, Authentication).", no_args_is_help=True)
role_app = typer.Typer(help="Roles and their permissions on key prefixes.", no_args_is_help=True)
auth_app = typer.Typer(help="Turn client auth on or off; show its state.", no_args_is_help=True)
AdminTokenOpt = Annotated[
    str | None,
    typer.Option(
        "--admin-token-file",
        help="The nodes' admin token file: manages auth even while it is disabled "
        "(default $CONSENSUSKIT_ADMIN_TOKEN_FILE).",
    ),
]


def _auth(
    verb: str,
    args: dict[str, Any],
    endpoints: str | None,
    user: str | None,
    token_file: str | None,
    as_json: bool,
) -> None:
    from consensuskit.server.auth_commands import auth_command

    raise typer.Exit(
        auth_command(verb, args, endpoints=endpoints, user=user, admin_token_file=token_file, as_json=as_json)
    )


def _new_password(password: str | None, no_password: bool) -> str | None:
    if no_password:
        if password is not None:
            raise typer.BadParameter("give --password or --no-password, not both", param_hint="'--password'")
        return None
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise typer.BadParameter("the password must not be empty", param_hint="'--password'")
    return password


PasswordOpt = Annotated[str | None, typer.Option(help="The new password (prompted for when omitted).")]
NoPasswordOpt = Annotated[
    bool, typer.Option("--no-password", help="No password: the user signs in with a client certificate only.")
]


@user_app.command("add")
def user_add(
    name: str,
    password: PasswordOpt = None,
    no_password: NoPasswordOpt = False,
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a user."""
    args = {"name": name, "password": _new_password(password, no_password)}
    _auth("user add", args, endpoints, user, admin_token_file, as_json)


@user_app.command("passwd")
def user_passwd(
    name: str,
    password: PasswordOpt = None,
    no_password: NoPasswordOpt = False,
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a user's password (its earlier tokens stop working)."""
    args = {"name": name, "password": _new_password(password, no_password)}
    _auth("user passwd", args, endpoints, user, admin_token_file, as_json)


@user_app.command("delete")
def user_delete(
    name: str,
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a user."""
    _auth("user delete", {"name": name}, endpoints, user, admin_token_file, as_json)


@user_app.command("list")
def user_list(
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List users and their roles."""
    _auth("user list", {}, endpoints, user, admin_token_file, as_json)


@user_app.command("grant-role")
def user_grant_role(
    name: str,
    role: str,
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give a user a role."""
    _auth("user grant-role", {"name": name, "role": role}, endpoints, user, admin_token_file, as_json)


@user_app.command("revoke-role")
def user_revoke_role(
    name: str,
    role: str,
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take a role from a user."""
    _auth("user revoke-role", {"name": name, "role": role}, endpoints, user, admin_token_file, as_json)


@role_app.command("add")
def role_add(
    role: str,
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a role (no permissions yet)."""
    _auth("role add", {"role": role}, endpoints, user, admin_token_file, as_json)


@role_app.command("delete")
def role_delete(
    role: str,
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a role (every user loses it)."""
    _auth("role delete", {"role": role}, endpoints, user, admin_token_file, as_json)


PrefixOpt = Annotated[str, typer.Option(help='Key prefix ("" = every key).')]


@role_app.command("grant")
def role_grant(
    role: str,
    prefix: PrefixOpt,
    permission: Annotated[str, typer.Option(help="read, write or readwrite.")],
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Grant a role a permission on a key prefix (replaces the one on the same prefix)."""
    from consensuskit.server.auth_commands import PERMISSIONS

    if permission not in PERMISSIONS:
        raise typer.BadParameter(
            f"unknown permission {permission!r}; valid: {', '.join(PERMISSIONS)}", param_hint="'--permission'"
        )
    args = {"role": role, "prefix": prefix, "permission": permission}
    _auth("role grant", args, endpoints, user, admin_token_file, as_json)


@role_app.command("revoke")
def role_revoke(
    role: str,
    prefix: PrefixOpt,
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a role's permission on a key prefix."""
    _auth("role revoke", {"role": role, "prefix": prefix}, endpoints, user, admin_token_file, as_json)


@role_app.command("list")
def role_list(
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List roles and their permissions."""
    _auth("role list", {}, endpoints, user, admin_token_file, as_json)


@auth_app.command("enable")
def auth_enable(
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enable client auth (needs a user root holding the role root)."""
    _auth("auth enable", {}, endpoints, user, admin_token_file, as_json)


@auth_app.command("disable")
def auth_disable(
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Disable client auth (every key open again)."""
    _auth("auth disable", {}, endpoints, user, admin_token_file, as_json)


@auth_app.command("status")
def auth_status(
    endpoints: EndpointsOpt = None,
    user: UserOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Whether client auth is enabled, and its revision."""
    _auth("auth status", {}, endpoints, user, admin_token_file, as_json)
