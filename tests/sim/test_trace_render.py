"""How sim/trace.py renders a record as a JSON-lines dict."""

from __future__ import annotations

from consensuskit.sim.trace import render


def test_a_protocol_record_keeps_its_fields_and_its_node():
    assert render((1.5, "rec", "n1", "role", {"role": "leader", "term": 3})) == {
        "t": 1.5, "ev": "rec", "node": "n1", "kind": "role", "role": "leader", "term": 3,
    }  # fmt: skip


def test_a_field_named_like_the_records_own_keys_does_not_rename_its_node():
    # Raft records rejoin-promote with node=<the promoted peer>: the record is still n1's.
    out = render((2.0, "rec", "n1", "rejoin-promote", {"node": "n3", "match": 7}))
    assert out["node"] == "n1" and out["rec_node"] == "n3" and out["match"] == 7
    assert out["kind"] == "rejoin-promote"
