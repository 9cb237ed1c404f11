"""check/common.py: the read-freshness and convergence judgements every log checker shares."""

from __future__ import annotations

import pytest

from consensuskit.check import InvariantViolation
from consensuskit.check.common import check_acknowledged_write, check_converged, check_read_fresh
from consensuskit.core.client import ClientRequest, ClientResponse, Op

READ = ClientRequest(client_id="c1", seq=4, op=Op(kind="get", key="x"))
# The committed prefix grew to 3 at t=1.0 and to 7 at t=2.0.
TIMES, POSITIONS = [1.0, 2.0], [3, 7]


def served_from(index: int) -> ClientResponse:
    return ClientResponse(client_id="c1", seq=4, ok=True, result="v", index=index)


@pytest.mark.parametrize(
    ("invoked", "index"),
    [(0.5, 0), (1.0, 3), (1.9, 3), (2.0, 7), (5.0, 9)],
)
def test_a_read_served_at_or_after_the_prefix_of_its_invocation_is_fresh(invoked, index):
    check_read_fresh(TIMES, POSITIONS, invoked, READ, served_from(index), unit="index", reached="committed")


@pytest.mark.parametrize(("invoked", "index", "required"), [(1.0, 2, 3), (2.5, 6, 7)])
def test_a_read_served_from_below_that_prefix_is_stale(invoked, index, required):
    with pytest.raises(InvariantViolation) as caught:
        check_read_fresh(TIMES, POSITIONS, invoked, READ, served_from(index), unit="slot", reached="executed")
    assert caught.value.name == "read-freshness"
    assert caught.value.detail == (
        f"c1#4 {READ.op.describe()} invoked at {invoked:.6f}, when slot {required} was already "
        f"executed, was served from slot {index}: result 'v' is stale"
    )


def test_members_at_one_position_with_one_state_have_converged():
    check_converged({"n1": (5, "d"), "n2": (5, "d"), "n3": (5, "d")}, what="applied index")
    check_converged({}, what="applied index")


def test_members_at_different_positions_have_not_converged():
    with pytest.raises(InvariantViolation) as caught:
        check_converged({"n1": (5, "d"), "n2": (4, "d")}, what="applied index")
    assert caught.value.name == "convergence"
    assert caught.value.detail == (
        "after the settle period the members' applied index differs: {'n1': 5, 'n2': 4}"
    )


def test_members_at_one_position_with_different_states_have_not_converged():
    with pytest.raises(InvariantViolation) as caught:
        check_converged({"n1": (5, "d"), "n2": (5, "e")}, what="executed slot")
    assert caught.value.detail == "the same executed slot but different states"


WRITE = ClientRequest(client_id="c1", seq=5, op=Op(kind="put", key="x", value="1"))


def test_a_write_acknowledged_at_the_position_of_its_command_passes():
    check_acknowledged_write(WRITE, WRITE, served_from(8), unit="index")


@pytest.mark.parametrize(
    "committed",
    [
        None,
        ClientRequest(client_id="c1", seq=4, op=WRITE.op),
        ClientRequest(client_id="c2", seq=5, op=WRITE.op),
        "noop",
    ],
)
def test_a_write_acknowledged_where_another_or_no_command_is_committed_fails(committed):
    with pytest.raises(InvariantViolation) as caught:
        check_acknowledged_write(committed, WRITE, served_from(8), unit="position")
    assert caught.value.name == "acknowledged-write"
    assert caught.value.detail == (
        f"c1#5 {WRITE.op.describe()} answered ok at position 8, which is not committed with that command"
    )
