"""Each node's own key pair on disk and the cluster's public keys file (node_keys.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from consensuskit.core import keys
from consensuskit.server.cluster import ClusterLayout
from consensuskit.server.config import load_config
from consensuskit.server.identity import _looks_empty
from consensuskit.server.node_keys import (
    NODE_KEY_NAME,
    KeysError,
    entry,
    load_or_create,
    node_keys,
    write_keys_file,
)


def test_a_node_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    seed = load_or_create(tmp_path / "n1")
    path = tmp_path / "n1" / NODE_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(tmp_path / "n1") == seed
    assert _looks_empty(tmp_path / "n1")  # a key made before the first start is no data
    path.write_text("not hex\n")
    with pytest.raises(KeysError, match="is not a node key"):
        load_or_create(tmp_path / "n1")


def test_a_node_starts_only_with_its_own_public_keys_in_the_file(tmp_path: Path) -> None:
    seeds = {n: load_or_create(tmp_path / n) for n in ("n1", "n2")}
    keys_file = tmp_path / "keys.json"
    write_keys_file(keys_file, {n: entry(s) for n, s in seeds.items()})
    seed, public = node_keys("n1", tmp_path / "n1", keys_file, ("n1", "n2"))
    assert seed == seeds["n1"] and public["n2"] == keys.public_keys(seeds["n2"])
    with pytest.raises(KeysError, match="lacks the members n3"):
        node_keys("n1", tmp_path / "n1", keys_file, ("n1", "n2", "n3"))
    # A lost disk made a new key: refused until the new entry is published.
    (tmp_path / "n2" / NODE_KEY_NAME).unlink()
    with pytest.raises(KeysError, match="not those of"):
        node_keys("n2", tmp_path / "n2", keys_file, ("n1", "n2"))
    keys_file.write_text(json.dumps({"format": 1, "nodes": {"n1": {"ed25519": "zz"}}}))
    with pytest.raises(KeysError, match="expected ed25519 and x25519 as hex"):
        node_keys("n1", tmp_path / "n1", keys_file)


def test_up_gives_each_node_a_key_pair_and_writes_the_public_keys_file(tmp_path: Path) -> None:
    layout = ClusterLayout.prepare(tmp_path / "c", 4, 29000, protocol="pbft")
    doc = json.loads(layout.keys_path.read_text())
    assert sorted(doc["nodes"]) == ["n1", "n2", "n3", "n4"]
    for spec in layout.nodes:
        cfg = load_config(spec.config_path)
        assert cfg.keys_file == layout.keys_path
        assert doc["nodes"][spec.node_id] == entry(load_or_create(spec.data_dir))
    # Prepared again (a restart): the keys stay.
    again = ClusterLayout.prepare(tmp_path / "c")
    assert json.loads(again.keys_path.read_text()) == doc
    # A crash-fault protocol's nodes get none (nothing to republish after a disk loss).
    raft = ClusterLayout.prepare(tmp_path / "r", 3, 29100, protocol="raft")
    assert not raft.keys_path.exists()
    assert load_config(raft.nodes[0].config_path).keys_file is None
    assert not (raft.nodes[0].data_dir / NODE_KEY_NAME).exists()
