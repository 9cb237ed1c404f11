"""The ``consensuskit member list|add|remove`` and ``consensuskit leader transfer`` verbs
(typer wiring only; what they do is ``server/admin_commands.py``).

Rules this module owns: those of cli.py (exit 0 done, 1 refused or unreachable, 2 bad
input); a protocol that lacks the capability a verb needs is one line naming it, exit 1.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from consensuskit.cli_auth import AdminTokenOpt, EndpointsOpt, JsonOpt, UserOpt

ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Change even if the voters left up would be fewer than a quorum (the cluster stops).",
    ),
]

member_app = typer.Typer(
    help="Cluster membership (protocols with the membership-change capability).", no_args_is_help=True
)
leader_app = typer.Typer(
    help="Leadership (protocols with the leader-transfer capability).", no_args_is_help=True
)


def _admin(
    verb: str, args: dict[str, Any], endpoints: str | None, user: str | None, token: str | None, as_json: bool
) -> None:
    from consensuskit.server.admin_commands import admin_command

    raise typer.Exit(
        admin_command(verb, args, endpoints=endpoints, user=user, admin_token_file=token, as_json=as_json)
    )


@member_app.command("list")
def member_list(endpoints: EndpointsOpt = None, as_json: JsonOpt = False, user: UserOpt = None) -> None:
    """The configuration as a node knows it."""
    _admin("member-list", {}, endpoints, user, None, as_json)


@member_app.command("add")
def member_add(
    node_id: Annotated[str, typer.Argument(help="The new member's node id.")],
    learner: Annotated[bool, typer.Option("--learner", help="Add as a non-voting learner.")] = False,
    peer_address: Annotated[str | None, typer.Option(help="HOST:PORT, for a node not in [peers].")] = None,
    client_url: Annotated[str | None, typer.Option(help="Its client URL, with --peer-address.")] = None,
    force: ForceOpt = False,
    endpoints: EndpointsOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a voter (or a learner); waits until the change commits."""
    args = {
        "id": node_id,
        "voter": not learner,
        "peer_address": peer_address,
        "client_url": client_url,
        "force": force or None,
    }
    _admin("member-add", args, endpoints, None, admin_token_file, as_json)


@member_app.command("remove")
def member_remove(
    node_id: Annotated[str, typer.Argument(help="The member to remove.")],
    force: ForceOpt = False,
    endpoints: EndpointsOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a member; waits until the change commits."""
    _admin("member-remove", {"id": node_id, "force": force}, endpoints, None, admin_token_file, as_json)


@leader_app.command("transfer")
def leader_transfer(
    to: Annotated[
        str | None, typer.Argument(help="The new leader (default: the most up-to-date voter).")
    ] = None,
    endpoints: EndpointsOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hand leadership to another voter; waits until it leads."""
    _admin("leader-transfer", {"to": to}, endpoints, None, admin_token_file, as_json)
