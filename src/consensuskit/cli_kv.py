"""The kv service's verbs: ``consensuskit kv get|put|delete|cas|list`` (cli.py adds them
under the service's name; ``server/commands.py`` does the work)."""

from __future__ import annotations

from typing import Annotated

import typer

from consensuskit.cli_auth import EndpointsOpt, JsonOpt, UserOpt

kv_app = typer.Typer(help="Read and write keys on a running cluster.", no_args_is_help=True)
ConsistencyOpt = Annotated[str, typer.Option(help="linearizable, lease or stale.")]


@kv_app.command("get")
def kv_get(
    key: str,
    endpoints: EndpointsOpt = None,
    consistency: ConsistencyOpt = "linearizable",
    as_json: JsonOpt = False,
    user: UserOpt = None,
) -> None:
    """Read a key."""
    from consensuskit.server.commands import kv_command

    raise typer.Exit(
        kv_command("get", key, endpoints=endpoints, consistency=consistency, as_json=as_json, user=user)
    )


@kv_app.command("put")
def kv_put(
    key: str, value: str, endpoints: EndpointsOpt = None, as_json: JsonOpt = False, user: UserOpt = None
) -> None:
    """Write a key."""
    from consensuskit.server.commands import kv_command

    raise typer.Exit(kv_command("put", key, value, endpoints=endpoints, as_json=as_json, user=user))


@kv_app.command("delete")
def kv_delete(
    key: str, endpoints: EndpointsOpt = None, as_json: JsonOpt = False, user: UserOpt = None
) -> None:
    """Delete a key."""
    from consensuskit.server.commands import kv_command

    raise typer.Exit(kv_command("delete", key, endpoints=endpoints, as_json=as_json, user=user))


@kv_app.command("cas")
def kv_cas(
    key: str,
    value: str,
    expected: Annotated[str | None, typer.Option(help="Swap only if the key holds this value.")] = None,
    expected_version: Annotated[
        int | None, typer.Option(min=0, help="Swap only at this version (0 = absent).")
    ] = None,
    endpoints: EndpointsOpt = None,
    as_json: JsonOpt = False,
    user: UserOpt = None,
) -> None:
    """Compare-and-swap a key by value or by version."""
    from consensuskit.server.commands import kv_command

    raise typer.Exit(
        kv_command(
            "cas",
            key,
            value,
            endpoints=endpoints,
            expected=expected,
            expected_version=expected_version,
            as_json=as_json,
            user=user,
        )
    )


@kv_app.command("list")
def kv_list(
    prefix: Annotated[str, typer.Argument(help="Key prefix.")] = "",
    endpoints: EndpointsOpt = None,
    consistency: ConsistencyOpt = "linearizable",
    as_json: JsonOpt = False,
    user: UserOpt = None,
) -> None:
    """List keys under a prefix."""
    from consensuskit.server.commands import kv_command

    raise typer.Exit(
        kv_command("list", prefix, endpoints=endpoints, consistency=consistency, as_json=as_json, user=user)
    )
