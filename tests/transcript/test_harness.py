"""The transcript harness works for every catalog protocol, by name only."""

from __future__ import annotations

import pytest

from consensuskit.catalog import default_registry

from .datadriven import DataDrivenError, parse
from .harness import Harness

PROTOCOLS = default_registry().names()
# The script below writes and reads a key: the protocols serving the kv service (the log
# protocols); a protocol bringing its own service gets the generic part only.
KV_PROTOCOLS = [p for p in PROTOCOLS if default_registry().get(p).log]
OWN_SERVICE = [p for p in PROTOCOLS if not default_registry().get(p).log]

SCRIPT = """\
add-nodes 4 protocol={protocol}
----

campaign n1
----

stabilize
----

propose n1 x=1
----

stabilize
----

propose n1 get x
----

stabilize
----

log n1
----

state n1
----

status n1
----
"""


def run(text: str, protocol: str = "raft") -> list[str]:
    harness = Harness(protocol=protocol)
    out = []
    for case in parse(text).cases:
        if case.command == "campaign" and not callable(getattr(harness.sim.nodes["n1"], "campaign", None)):
            continue  # leaderless protocols: the proposal itself runs phase 1
        out.append(harness.handle(case))
    return out


@pytest.mark.parametrize("protocol", OWN_SERVICE)
def test_every_protocol_with_its_own_service_runs_a_transcript(protocol: str):
    script = "add-nodes 3 protocol={p}\n----\n\nelapse 3\n----\n\nstabilize\n----\n\nlog n1\n----\n"
    out = run(script.format(p=protocol), protocol)
    assert out[-1].strip(), out
    assert "VIOLATION" not in "".join(out) and "error" not in "".join(out)
    assert run(script.format(p=protocol), protocol) == out


@pytest.mark.parametrize("protocol", KV_PROTOCOLS)
def test_every_catalog_protocol_runs_a_transcript(protocol: str):
    out = run(SCRIPT.format(protocol=protocol), protocol)
    text = "".join(out)
    assert "n1->c1 ok seq=1" in text, text  # the write was answered
    assert "n1->c2 ok seq=1 result={value:1" in text, text  # and read back
    assert out[-2].strip() == "x=1 v1"  # state n1
    assert "VIOLATION" not in text and "error" not in text
    # Same commands, same output: the harness is deterministic.
    assert run(SCRIPT.format(protocol=protocol), protocol) == out


def test_nothing_moves_unless_a_command_says_so():
    out = run("add-nodes 3\n----\n\ncampaign n1\n----\n\npending\n----\n\ntimers n2\n----\n")
    assert out[1] == "n1 role=pre-candidate term=1\n"
    assert out[2] == "n1->n2 PreVote term=1 last=0/0\nn1->n3 PreVote term=1 last=0/0\n"
    assert out[3].startswith("election in ")


def test_bad_commands_name_the_valid_ones():
    harness = Harness()
    with pytest.raises(DataDrivenError, match="add-nodes must come first"):
        harness.handle(parse("log\n----\n").cases[0])
    harness.handle(parse("add-nodes 3\n----\n").cases[0])
    with pytest.raises(DataDrivenError, match=r"unknown command 'nope'; valid: .*stabilize"):
        harness.handle(parse("nope\n----\n").cases[0])
    assert harness.handle(parse("crash n9\n----\n").cases[0]).startswith("error: unknown node 'n9'")
    assert "no armed timer 'x'" in harness.handle(parse("fire n1 x\n----\n").cases[0])


def test_campaign_needs_a_protocol_with_elections():
    harness = Harness(protocol="basic-paxos")
    harness.handle(parse("add-nodes 3\n----\n").cases[0])
    with pytest.raises(DataDrivenError, match="basic-paxos has no campaign"):
        harness.handle(parse("campaign n1\n----\n").cases[0])
