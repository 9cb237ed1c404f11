"""ProtocolSpec.view: how viewers draw a protocol, as plain data (core/registry.py)."""

import json

import pytest

from consensuskit.core.registry import ViewPhase, ViewSpec


def test_default_view_draws_generically():
    data = ViewSpec().to_json()
    assert data["panel"] == "none" and data["heartbeats"] == [] and data["phases"] == []


def test_view_spec_is_json_and_generation_field_defaults_to_generation():
    spec = ViewSpec(
        roles=("leader", "follower"),
        generation="term",
        heartbeats=("Heartbeat",),
        panel="log",
        phases=(ViewPhase(name="vote", messages=("RequestVote",), colour="#f80"),),
    )
    data = json.loads(json.dumps(spec.to_json()))
    assert data["generation_field"] == "term"
    assert data["phases"] == [{"name": "vote", "messages": ["RequestVote"], "colour": "#f80"}]


def test_unknown_panel_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="none, log, members, votes"):
        ViewSpec(panel="graph")
