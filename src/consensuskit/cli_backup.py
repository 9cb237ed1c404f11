"""The ``consensuskit backup save|restore|status`` verbs (typer wiring only; what they do
is ``server/backup_commands.py``).

Rules this module owns: those of cli.py (exit 0 done, 1 refused or unreachable, 2 bad
input as one line).
"""

from __future__ import annotations

from typing import Annotated

import typer

from consensuskit.cli_auth import AdminTokenOpt, EndpointsOpt, JsonOpt

backup_app = typer.Typer(
    help="Back up a log service's whole state; restore it into a new cluster (docs/server.md).",
    no_args_is_help=True,
)
FileArg = Annotated[str, typer.Argument(help="The backup file.")]


@backup_app.command("save")
def backup_save(
    file: FileArg,
    endpoints: EndpointsOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the cluster's state, as of a linearizable read, to FILE (admin token)."""
    from consensuskit.server.backup_commands import backup_command

    raise typer.Exit(
        backup_command(
            "backup-save",
            {"file": file},
            endpoints=endpoints,
            admin_token_file=admin_token_file,
            as_json=as_json,
        )
    )


@backup_app.command("restore")
def backup_restore(
    file: FileArg,
    endpoints: EndpointsOpt = None,
    admin_token_file: AdminTokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore FILE into a running cluster of its service that holds no data yet.

    To start a new cluster holding it: `consensuskit up --restore FILE`."""
    from consensuskit.server.backup_commands import backup_command

    raise typer.Exit(
        backup_command(
            "backup-restore",
            {"file": file},
            endpoints=endpoints,
            admin_token_file=admin_token_file,
            as_json=as_json,
        )
    )


@backup_app.command("status")
def backup_status(file: FileArg, as_json: JsonOpt = False) -> None:
    """Check FILE (checksum, format, and that its state restores) and describe it."""
    from consensuskit.server.backup_commands import status_command

    raise typer.Exit(status_command(file, as_json=as_json))
