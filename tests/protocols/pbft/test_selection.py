"""The NEW-VIEW decision procedure (selection.py, TOCS §4.5) against hand-built view changes."""

from __future__ import annotations

from consensuskit.core.client import ClientRequest, Op
from consensuskit.protocols.pbft.messages import Cert, ViewChange, batch_digest
from consensuskit.protocols.pbft.selection import NULL_BATCH, select

F = 1
A = (ClientRequest(client_id="c1", seq=1, op=Op(kind="put", key="x", value=1)),)
B = (ClientRequest(client_id="c2", seq=1, op=Op(kind="put", key="x", value=2)),)
DA, DB = batch_digest(A), batch_digest(B)


def vc(replica: str, prepared=(), preprepared=(), stable: int = 0) -> ViewChange:
    return ViewChange(
        view=1,
        replica=replica,
        stable_seq=stable,
        stable_digest=b"",
        proof=(),
        prepared=tuple(prepared),
        preprepared=tuple(preprepared),
    )


def test_fewer_than_2f_plus_1_view_changes_decide_nothing():
    assert select([vc("n1"), vc("n2")], F) is None


def test_nothing_prepared_anywhere_re_issues_nothing():
    sel = select([vc("n1"), vc("n2"), vc("n3")], F)
    assert sel is not None and sel.decisions == {} and sel.min_s == 0


def test_a_prepared_batch_vouched_for_by_f_plus_1_keeps_its_number():
    """A committed batch was prepared at f+1 correct replicas: A1 and A2 hold for it."""
    p = Cert(seq=1, view=0, digest=DA)
    q = Cert(seq=1, view=0, digest=DA, batch=A)
    sel = select([vc("n1", [p], [q]), vc("n2", [p], [q]), vc("n3", [], [q])], F)
    assert sel is not None and sel.decisions == {1: (DA, A)}


def test_a_single_liars_prepared_claim_is_not_enough():
    """A2 fails: only the liar reports B pre-prepared; the others report nothing prepared,
    which (B) fills the hole with the null request rather than B."""
    lie_p = Cert(seq=1, view=0, digest=DB)
    lie_q = Cert(seq=1, view=0, digest=DB, batch=B)
    honest = [vc("n2"), vc("n3"), vc("n4")]
    sel = select([vc("n1", [lie_p], [lie_q]), *honest], F)
    assert sel is not None and sel.decisions == {1: (batch_digest(NULL_BATCH), NULL_BATCH)}


def test_a_later_view_wins_over_an_earlier_prepared_certificate():
    old_p, old_q = Cert(seq=1, view=0, digest=DA), Cert(seq=1, view=0, digest=DA, batch=A)
    new_p, new_q = Cert(seq=1, view=2, digest=DB), Cert(seq=1, view=2, digest=DB, batch=B)
    sel = select(
        [vc("n1", [old_p], [old_q]), vc("n2", [new_p], [new_q]), vc("n3", [new_p], [new_q, old_q])], F
    )
    assert sel is not None and sel.decisions == {1: (DB, B)}


def test_undecided_until_more_view_changes_arrive():
    """n1 prepared A, n2 says B was prepared, n3 reports nothing: neither digest has
    2f+1 view changes that do not contradict it (A1), and only one reports nothing
    prepared (B): the new primary waits for the fourth view change."""
    p, q = Cert(seq=1, view=0, digest=DA), Cert(seq=1, view=0, digest=DA, batch=A)
    other = Cert(seq=1, view=0, digest=DB)
    assert select([vc("n1", [p], [q]), vc("n2", [other]), vc("n3")], F) is None


def test_the_bug_knob_ignores_every_prepared_certificate():
    p, q = Cert(seq=1, view=0, digest=DA), Cert(seq=1, view=0, digest=DA, batch=A)
    sel = select([vc("n1", [p], [q]), vc("n2", [p], [q]), vc("n3", [p], [q])], F, ignore_prepared=True)
    assert sel is not None and sel.decisions == {}


def test_with_five_replicas_three_view_changes_are_not_a_quorum():
    """n = 5, f = 1: certificates need 4 (node.byzantine_quorum).  Three view changes
    that report nothing may come from the replicas that missed a request the other two
    committed with one of them; with 2f+1 = 3 they would open the view without it."""
    three = [vc("n3"), vc("n4"), vc("n5")]
    assert select(three, F) is not None  # n = 3f+1's rule
    assert select(three, F, quorum=4) is None
    prepared = [Cert(seq=1, view=0, digest=DA)], [Cert(seq=1, view=0, digest=DA, batch=A)]
    four = [vc("n2", *prepared), vc("n1", *prepared), *three[:2]]
    sel = select(four, F, quorum=4)
    assert sel is not None and sel.decisions == {1: (DA, A)}
