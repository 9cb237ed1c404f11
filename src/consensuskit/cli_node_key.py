"""``consensuskit node-key DATA_DIR --node ID``: a node's own key pair (made if missing)
and its entry for the cluster's public keys file (server/node_keys.py; docs/server.md,
"Node keys").  Exit 0 done, 1 the key file is unreadable."""

from __future__ import annotations

from typing import Annotated

import typer


def node_key(
    data_dir: Annotated[str, typer.Argument(help="The node's data directory (node.key lives there).")],
    node: Annotated[str, typer.Option("--node", help="The node's id, as the keys file names it.")],
) -> None:
    """Make the node's key pair if missing; print its public keys entry (JSON)."""
    from consensuskit.server.node_keys import node_key_command

    raise typer.Exit(node_key_command(data_dir, node))
