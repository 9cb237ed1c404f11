"""Each node's own key pair on disk, and the file of its cluster's public keys
(core/keys.py has the derivations; docs/server.md, "Node keys", the operator's steps).

Rules this module owns:
  * a node's secret key is ``node.key`` in its data directory: 64 hex digits, mode 0600,
    written atomically (temp file, fsync, rename) at the first start that needs it (or
    by ``consensuskit up`` before it) and never rewritten;
  * the public keys file (``keys_file`` in a node's config; ``up`` writes
    ``ROOT/keys.json``) is ``{"format": 1, "nodes": {ID: {"ed25519": HEX, "x25519":
    HEX}}}``; it holds public keys only, so it may be copied anywhere;
  * a node starts with keys only if the file names it with the public keys of its own
    ``node.key``; anything else (a missing or malformed file, another key: a lost disk
    made a new one) refuses to start with one line saying what to do (``KeysError``);
  * ``consensuskit node-key DATA_DIR --node ID`` makes the key if missing and prints the
    node's entry for the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from consensuskit.core import keys
from consensuskit.server.wal import write_file_atomically
from consensuskit.server.wal_format import NODE_KEY_NAME

__all__ = ["NODE_KEY_NAME", "KeysError", "entry", "load_or_create", "load_public_keys", "node_keys"]
KEYS_FORMAT = 1


class KeysError(Exception):
    """One line: why the keys cannot be used, and what to do."""


def load_or_create(data_dir: Path) -> bytes:
    """This node's secret key, made on first use."""
    path = Path(data_dir) / NODE_KEY_NAME
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        seed = keys.new_node_key()
        write_file_atomically(path, (seed.hex() + "\n").encode("ascii"), mode=0o600)
        return seed
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysError(f"cannot read {path}: {exc}") from None
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != keys.KEY_BYTES:
        raise KeysError(
            f"{path} is not a node key ({2 * keys.KEY_BYTES} hex digits); restore it from a backup"
        )
    return seed


def entry(seed: bytes) -> dict[str, str]:
    """The node's entry in the public keys file."""
    return {name: value.hex() for name, value in keys.public_keys(seed).items()}


def write_keys_file(path: Path, entries: dict[str, dict[str, str]]) -> None:
    doc = {"format": KEYS_FORMAT, "nodes": dict(sorted(entries.items()))}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_public_keys(path: Path) -> dict[str, dict[str, bytes]]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KeysError(f"keys_file {path}: {exc}") from None
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("format") != KEYS_FORMAT or not isinstance(nodes, dict):
        raise KeysError(f'keys_file {path}: expected {{"format": {KEYS_FORMAT}, "nodes": {{ID: ...}}}}')
    out: dict[str, dict[str, bytes]] = {}
    for node, value in nodes.items():
        try:
            parsed = {name: bytes.fromhex(value[name]) for name in ("ed25519", "x25519")}
        except (KeyError, TypeError, ValueError):
            raise KeysError(f"keys_file {path}: node {node}: expected ed25519 and x25519 as hex") from None
        if any(len(v) != keys.KEY_BYTES for v in parsed.values()):
            raise KeysError(f"keys_file {path}: node {node}: a public key is 32 bytes")
        out[str(node)] = parsed
    return out


def node_keys(
    node_id: str, data_dir: Path, keys_file: Path, members: Any = ()
) -> tuple[bytes, dict[str, dict[str, bytes]]]:
    """(this node's secret key, every node's public keys), checked (see the rules)."""
    public = load_public_keys(keys_file)
    seed = load_or_create(data_dir)
    mine = public.get(node_id)
    if mine is None:
        raise KeysError(
            f"keys_file {keys_file} does not name {node_id}; add its entry "
            f"(consensuskit node-key {data_dir} --node {node_id})"
        )
    if mine != keys.public_keys(seed):
        raise KeysError(
            f"keys_file {keys_file}: {node_id}'s public keys are not those of "
            f"{Path(data_dir) / NODE_KEY_NAME} "
            "(a new key after a lost disk?); publish its new entry to every node "
            f"(consensuskit node-key {data_dir} --node {node_id})"
        )
    missing = sorted(set(members) - set(public))
    if missing:
        raise KeysError(f"keys_file {keys_file} lacks the members {', '.join(missing)}")
    return seed, public


def node_key_command(data_dir: str, node: str) -> int:
    """``consensuskit node-key DATA_DIR --node ID``: print the node's entry (JSON)."""
    try:
        seed = load_or_create(Path(data_dir))
    except KeysError as exc:
        print(f"error: {exc}")
        return 1
    print(json.dumps({node: entry(seed)}, indent=2))
    return 0
