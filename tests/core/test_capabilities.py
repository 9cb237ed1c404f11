"""``NodeStatus``'s reserved ``details["peers"]``: read only through ``peer_progress``,
which never lets a node's odd use of the name fail a status request."""

from __future__ import annotations

from consensuskit.core.capabilities import NodeStatus, peer_progress


def test_per_peer_progress_is_read_as_given():
    details = {"peers": {"n2": {"match": 7, "next": 8, "state": "replicate"}, "n3": {"match": 3}}}
    assert peer_progress(details) == {"n2": {"match": 7, "next": 8, "state": "replicate"}, "n3": {"match": 3}}


def test_other_shapes_read_as_no_progress():
    # A gossip node once reported "peers": 4 (a count); /v1/status crashed on it.
    assert peer_progress({"peers": 4}) == {}
    assert peer_progress({"peers": ["n2", "n3"]}) == {}
    assert peer_progress({}) == {}
    assert peer_progress({"peers": {"n2": 5, "n3": {"match": 1}}}) == {"n3": {"match": 1}}


def test_the_common_fields_win_a_name_clash_in_the_json_form():
    status = NodeStatus(
        id="n1",
        role="member",
        leader=None,
        generation_name="round",
        generation=2,
        details={"role": "spoofed", "peers": 4},
    )
    assert status.to_dict()["role"] == "member"
