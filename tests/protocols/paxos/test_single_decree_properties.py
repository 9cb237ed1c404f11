"""Hypothesis: whatever the message order, losses, duplicates, timeouts and restarts,
a few proposers and acceptors never choose two values for a slot (Basic and Fast)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from consensuskit.protocols.paxos.basic import PROPOSE_TIMER
from consensuskit.protocols.paxos.basic_messages import describe

from .fake_single_decree import Net


class VoteLog:
    """Every acceptor vote ever persisted (MemoryStorage: persisted = durable)."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.votes: dict[tuple[int, Any], dict[str, Any]] = {}
        self.fast: dict[tuple[int, Any], bool] = {}

    def on_persist(self, node: Any, kind: str, slot: int, record: Any) -> None:
        if kind == "acceptor" and record.accepted_value is not None:
            key = (slot, record.accepted_ballot)
            self.votes.setdefault(key, {})[node.id] = record.accepted_value
            self.fast[key] = record.accepted_fast

    def on_offered(self, node: Any, value: Any) -> None:
        pass

    def on_execute(self, node: Any, slot: int, value: Any) -> None:
        pass

    def chosen(self) -> dict[int, set[str]]:
        any_node = next(iter(self.net.nodes.values()))
        out: dict[int, set[str]] = {}
        for (slot, _), voters in self.votes.items():
            need = any_node.quorum_size(self.fast[(slot, _)])
            for value in voters.values():
                if sum(1 for v in voters.values() if v == value) >= need:
                    out.setdefault(slot, set()).add(describe(value))
        return out


def run_schedule(data: Any, fast: bool, **options: Any) -> None:
    ids = ["n1", "n2", "n3", "n4"] if fast else ["n1", "n2", "n3"]
    net = Net(ids, fast=fast, **options)
    log = VoteLog(net)

    def watch() -> None:
        for node in net.nodes.values():
            node.observer = log

    watch()
    if fast:
        net.deliver_all()  # the coordinator's "any"
    values = iter("abcdefgh")
    for _ in range(data.draw(st.integers(10, 80), label="steps")):
        action = data.draw(
            st.sampled_from(["deliver", "deliver", "deliver", "drop", "dup", "propose", "timeout", "restart"])
        )
        if action == "propose":
            who = data.draw(st.sampled_from(ids))
            value = next(values, None)
            if value is not None:
                net.invoke(who, lambda n, v=value: n.propose(v))
        elif action == "timeout":
            who = data.draw(st.sampled_from(ids))
            if PROPOSE_TIMER in net.envs[who].timers:
                net.fire(who, PROPOSE_TIMER)
        elif action == "restart":
            net.restart(data.draw(st.sampled_from(ids)))
            watch()
        elif net.flight:
            i = data.draw(st.integers(0, len(net.flight) - 1))
            if action == "drop":
                net.flight.pop(i)
            elif action == "dup":
                net.flight.append(net.flight[i])
            else:
                net.deliver(i)
        chosen = log.chosen()
        assert all(len(v) == 1 for v in chosen.values()), f"two values chosen: {chosen}"
        for node in net.nodes.values():
            for slot, value in node.chosen.items():
                assert chosen.get(slot) == {describe(value)}, (node.id, slot, value, chosen)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data())
def test_basic_paxos_never_chooses_two_values(data):
    run_schedule(data, fast=False, backoff=False)


@SETTINGS
@given(st.data())
def test_fast_paxos_never_chooses_two_values(data):
    run_schedule(
        data, fast=True, backoff=False, recovery=data.draw(st.sampled_from(["coordinated", "uncoordinated"]))
    )


@pytest.mark.parametrize("bug", ["ignore-promise", "accept-lower-ballot"])
def test_the_same_search_catches_each_bug_knob(bug: str):
    @settings(
        max_examples=500,
        deadline=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def search(data):
        run_schedule(data, fast=False, backoff=False, bugs=[bug])

    with pytest.raises(AssertionError, match=r"two values chosen|n[0-9]"):
        search()
