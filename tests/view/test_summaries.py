"""Per-protocol drawing data from the catalog (ProtocolSpec.view, view/summaries.py)."""

import pytest

from consensuskit.catalog import default_catalog
from consensuskit.core.registry import ViewSpec
from consensuskit.view.summaries import (
    guess_protocol,
    heartbeat_types,
    message_types,
    python_pattern,
    view_meta,
)
from consensuskit.viz.timeline import HEARTBEAT_TYPES
from tests.view.conftest import TRACED, read_records


def test_every_catalog_protocol_has_a_protocol_panel():
    for entry in default_catalog().protocols():
        view = entry.spec.view
        assert view.panel != "none", f"{entry.name} draws no protocol panel"
        assert view.phases, f"{entry.name} names no phases"
        for pattern in (view.vote_pattern, view.rumour_pattern):
            if pattern:
                python_pattern(pattern)  # compiles


def test_role_records_carry_the_generation_field(traces):
    """The generation the page shows is read from the role records' field the view names."""
    views = {e.name: e.spec.view for e in default_catalog().protocols()}
    for protocol, path in traces.items():
        view = views[protocol]
        field = view.generation_field or view.generation
        roles = [r for r in read_records(path) if r["ev"] == "rec" and r["kind"] == "role"]
        assert roles, protocol
        if field:
            assert all(field in r for r in roles), (protocol, field, roles[0])
        assert {r["role"] for r in roles} <= set(view.roles), (protocol, {r["role"] for r in roles})


def test_the_protocol_of_a_trace_is_guessed_from_its_messages(traces):
    views = {e.name: e.spec.view for e in default_catalog().protocols()}
    for protocol, path in traces.items():
        assert guess_protocol(read_records(path), views) == protocol


def test_a_trace_matching_no_view_draws_generically():
    meta = view_meta([{"t": 0, "ev": "start", "node": "a"}], views={"x": ViewSpec(heartbeats=("Beat",))})
    assert meta["protocol"] == "" and meta["view"]["panel"] == "none" and meta["nodes"] == ["a"]


def test_an_unknown_protocol_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown protocol 'nope'; valid: .*raft"):
        view_meta([], protocol="nope")


def test_votes_and_rumours_match_the_real_summaries(traces):
    views = {e.name: e.spec.view for e in default_catalog().protocols()}
    votes = python_pattern(views["2pc"].vote_pattern)
    summaries = [
        r["msg"] for r in read_records(traces["2pc"]) if r["ev"] == "deliver" and r["type"] == "Vote"
    ]
    matched = [votes.match(s) for s in summaries]
    assert summaries and all(matched)
    assert {m["vote"] for m in matched} <= set(views["2pc"].yes_votes) | {"no"}
    rumours = python_pattern(views["gossip"].rumour_pattern)
    carried = [
        r["msg"] for r in read_records(traces["gossip"]) if r["ev"] == "deliver" and r["type"] == "Rumor"
    ]
    assert carried and all(rumours.findall(s) for s in carried)
    assert rumours.findall("Rumor [k0@10.n4 k1@12.n4]") == ["k0@10.n4", "k1@12.n4"]
    # gossip-kv's stamps are hybrid logical clocks: key@wall+logical.origin.
    kv_rumours = python_pattern(views["gossip-kv"].rumour_pattern)
    assert kv_rumours.findall("Rumor [k0@51+0.n4 k2@79+1.n4 deleted]") == ["k0@51+0.n4", "k2@79+1.n4"]


def test_heartbeats_come_from_the_catalog():
    assert heartbeat_types("raft") == HEARTBEAT_TYPES
    assert heartbeat_types("zab") == frozenset({"Ping", "PingAck"})
    assert heartbeat_types(None) >= {"Heartbeat", "HeartbeatAck", "Ping", "PingAck"}
    assert set(TRACED) <= {e.name for e in default_catalog().protocols()}


def test_every_message_a_view_names_is_a_registered_message():
    """A typo in a view's phases or heartbeats would silently draw a message grey."""
    from consensuskit.core.messages import registered_messages

    registered = {cls.__name__ for cls in registered_messages().values()}  # the catalog imported all
    for entry in default_catalog().protocols():
        named = message_types(entry.spec.view)
        assert named <= registered, (entry.name, sorted(named - registered))
