"""Several groups' logs in one host log (protocols/sharded/mux.py): what a restart
replays is what each group wrote, across truncations, compactions and checkpoints."""

from __future__ import annotations

import random

from consensuskit.core.storage import MemoryStorage
from consensuskit.protocols.sharded import mux
from consensuskit.protocols.sharded.mux import GroupStorage, Journal


def test_each_group_reads_back_its_own_log_and_records_after_a_restart() -> None:
    host = MemoryStorage()
    journal = Journal(host, 2)
    g0, g1 = GroupStorage(journal, 0), GroupStorage(journal, 1)
    g0.log_append(["a1", "a2", "a3"])
    g1.log_append(["b1"])
    g0.log_truncate_from(3)
    g0.log_append(["a3'"])
    g1.log_compact_to(2)
    g1.log_append(["b2"])
    g0.put("hard", 1)
    g1.put("hard", 2)
    again = Journal(host, 2)
    r0, r1 = GroupStorage(again, 0), GroupStorage(again, 1)
    assert r0.log_records() == ["a1", "a2", "a3'"] and r0.log_first() == 1
    assert r1.log_records() == ["b2"] and r1.log_first() == 2
    assert (r0.get("hard"), r1.get("hard")) == (1, 2)


def test_a_checkpoint_bounds_the_journal_and_changes_nothing_read_back(monkeypatch) -> None:
    monkeypatch.setattr(mux, "CHECKPOINT_SLACK", 8)
    host = MemoryStorage()
    journal = Journal(host, 3)
    groups = [GroupStorage(journal, g) for g in range(3)]
    rng = random.Random(7)
    model: list[list[str]] = [[], [], []]
    firsts = [1, 1, 1]
    for step in range(300):
        g = rng.randrange(3)
        last = firsts[g] + len(model[g]) - 1
        if rng.random() < 0.7 or not model[g]:
            groups[g].log_append([f"{g}:{step}"])
            model[g].append(f"{g}:{step}")
        elif rng.random() < 0.5:
            position = rng.randint(firsts[g], last)
            groups[g].log_truncate_from(position)
            del model[g][position - firsts[g] :]
        else:
            position = rng.randint(firsts[g], last + 1)
            groups[g].log_compact_to(position)
            del model[g][: position - firsts[g]]
            firsts[g] = position
    assert host.get(mux.CHECKPOINT_KEY) is not None
    assert host.log_last() - host.log_first() + 1 < 8 + sum(map(len, model)) + 1
    again = Journal(host, 3)
    for g in range(3):
        assert again.logs[g].log_records() == model[g]
        assert again.logs[g].log_first() == firsts[g]
