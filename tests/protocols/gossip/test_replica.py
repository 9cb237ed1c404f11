"""The replica's merge and Merkle tree (protocols/gossip/replica.py): merge is
commutative, associative and idempotent, and the tree is a function of the content."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensuskit.protocols.gossip.messages import Entry
from consensuskit.protocols.gossip.replica import DEPTH, Replica, leaf_of

entries = st.lists(
    st.builds(
        Entry,
        key=st.text(alphabet="abcdef", min_size=1, max_size=3),
        counter=st.integers(1, 6),
        origin=st.sampled_from(["n1", "n2", "n3"]),
        value=st.integers(0, 9),
    ),
    max_size=30,
)


def built(*batches: list[Entry]) -> Replica:
    replica = Replica()
    for batch in batches:
        for entry in batch:
            replica.merge(entry)
    return replica


def same_writes(batch: list[Entry]) -> list[Entry]:
    """A stamp names one write: keep the first value per (key, counter, origin)."""
    seen: dict[tuple[str, int, str], Entry] = {}
    for e in batch:
        seen.setdefault((e.key, e.counter, e.origin), e)
    return list(seen.values())


@settings(max_examples=80, deadline=None)
@given(a=entries, b=entries, c=entries)
def test_merge_is_commutative_associative_and_idempotent(
    a: list[Entry], b: list[Entry], c: list[Entry]
) -> None:
    a, b, c = (same_writes(x) for x in (a, b, c))
    writes = {(e.key, e.counter, e.origin): e for e in [*a, *b, *c]}
    a, b, c = ([writes[(e.key, e.counter, e.origin)] for e in x] for x in (a, b, c))
    one = built(a, b, c)
    assert built(c, b, a).all_entries() == one.all_entries()  # any order
    assert built(b, a, c).root() == one.root()
    assert built(a, a, b, b, c, c).all_entries() == one.all_entries()  # duplicates change nothing
    assert built(list(reversed(a + b + c))).root() == one.root()


@settings(max_examples=40, deadline=None)
@given(batch=entries)
def test_the_tree_covers_exactly_what_the_map_holds(batch: list[Entry]) -> None:
    replica = built(same_writes(batch))
    assert sorted(e.key for e in replica.under("")) == sorted(replica.entries)
    for key in replica.entries:
        leaf = leaf_of(key)
        assert len(leaf) == DEPTH and key in {e.key for e in replica.under(leaf)}
    assert (replica.root() == b"") == (len(replica) == 0)
    assert replica.size_at("") == len(replica)
    assert all(replica.size_at(p) == sum(1 for _ in replica.under(p)) for p in replica.hashes)
