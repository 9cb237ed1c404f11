"""The terminal timeline: exact rows for small synthetic traces."""

from __future__ import annotations

from consensuskit.viz import render_timeline, timeline_rows, timeline_text

NODES = ["n1", "n2", "n3"]


def deliver(t: float, src: str, dst: str, typ: str, msg: str) -> dict:
    return {"t": t, "ev": "deliver", "src": src, "dst": dst, "mid": 1, "type": typ, "msg": msg}


def hb(t: float, src: str = "n1", dst: str = "n2") -> dict:
    return deliver(t, src, dst, "Heartbeat", "Heartbeat term=2 commit=3")


ELECTION = [
    {"t": 0.0, "ev": "rec", "node": "n1", "kind": "role", "role": "follower", "term": 0},
    {"t": 0.0, "ev": "start", "node": "n1", "incarnation": 1},
    {"t": 0.3, "ev": "timer", "node": "n1", "key": "election"},
    {"t": 0.3, "ev": "rec", "node": "n1", "kind": "role", "role": "candidate", "term": 2},
    {"t": 0.3, "ev": "send", "src": "n1", "dst": "n3", "mid": 1, "type": "RequestVote", "msg": "x"},
    deliver(0.312, "n1", "n3", "RequestVote", "RequestVote term=2 last=1/3"),
    deliver(0.315, "n3", "n1", "RequestVoteResponse", "VoteResp term=2 granted"),
    {"t": 0.315, "ev": "rec", "node": "n1", "kind": "role", "role": "leader", "term": 2},
    {
        "t": 0.316,
        "ev": "drop",
        "src": "n1",
        "dst": "n2",
        "mid": 4,
        "type": "AppendEntries",
        "msg": "AppendEntries term=2 prev=1/3 commit=3 entries=[2/4]",
        "reason": "partition",
    },
    {"t": 0.32, "ev": "rec", "node": "n1", "kind": "commit", "index": 4, "term": 2},
    {"t": 0.33, "ev": "fault", "kind": "partition", "groups": "n1,n2|n3"},
    {"t": 0.34, "ev": "fault", "kind": "crash", "node": "n2", "lost_writes": 0, "lost_outputs": 0},
    deliver(0.35, "n3", "n1", "AppendEntriesResponse", "AppendResp term=2 ok match=4"),
    {"t": 0.36, "ev": "invoke", "client": "c1", "seq": 1, "node": "n1", "attempt": 1, "op": "put k0=5"},
    {"t": 0.37, "ev": "complete", "client": "c1", "seq": 1, "status": "ok", "result": None},
    {"t": 0.38, "ev": "violation", "name": "election-safety", "detail": "two leaders"},
]


def test_small_election_renders_exact_rows() -> None:
    assert render_timeline(ELECTION, NODES).splitlines() == [
        "            n1    n2    n3",
        "   0.300    #     |     |    n1 becomes candidate term 2",
        "   0.312    *---------->|    RequestVote term=2 last=1/3",
        "   0.315    |<----------*    VoteResp term=2 granted",
        "   0.315    #     |     |    n1 becomes LEADER term 2",
        "   0.316    *----x|     |    dropped AppendEntries term=2 prev=1/3 commit=3 entries=[2/4]"
        " (partition)",
        "   0.320    +     |     |    n1 commit 4",
        "   0.330    |     |     |    !! partition n1,n2 | n3",
        "   0.340    |     X     |    !! crash n2",
        "   0.350    |<----------*    AppendResp term=2 ok match=4",
        "   0.360    o     :     |    c1 invoke #1 put k0=5 at n1",
        "   0.370    |     :     |    c1 #1 ok put k0=5",
        "   0.380    |     :     |    !! VIOLATION election-safety: two leaders",
    ]


def test_heartbeat_runs_collapse_into_one_line_each() -> None:
    commit = {"t": 1.2, "ev": "rec", "node": "n2", "kind": "commit", "index": 5, "term": 2}
    records = [
        hb(1.0),
        hb(1.05, "n2", "n1"),
        hb(1.1),
        commit,
        hb(1.3),
        deliver(1.4, "n1", "n2", "AppendEntries", "AppendEntries term=2"),
        hb(1.5),
    ]
    lines = render_timeline(records, NODES).splitlines()
    # The commit does not split the run; the message does.  Times stay in order.
    assert lines[1:] == [
        "   1.200    |     +     |    n2 commit 5",
        "   1.300    |     |     |    … 4 heartbeats since 1.000",
        "   1.400    *---->|     |    AppendEntries term=2",
        "   1.500    |     |     |    … 1 heartbeat",
    ]


def test_heartbeat_modes_show_and_hide() -> None:
    records = [hb(1.0), hb(1.1)]
    assert len(render_timeline(records, NODES, heartbeats="show").splitlines()) == 3
    assert render_timeline(records, NODES, heartbeats="hide").splitlines() == ["            n1    n2    n3"]


def test_repeated_role_record_is_not_news() -> None:
    role = {"t": 1.0, "ev": "rec", "node": "n3", "kind": "role", "role": "follower", "term": 2}
    role["leader"] = None
    known = dict(role, t=1.1, leader="n1")
    rows = timeline_rows([role, dict(role, t=1.05), known, dict(known, t=1.2)], NODES)
    assert [r.label for r in rows[1:]] == [
        "n3 becomes follower term 2",
        "n3 becomes follower term 2 (leader n1)",
    ]


def test_width_cuts_long_rows_and_rich_text_matches_plain() -> None:
    plain = render_timeline(ELECTION, NODES, width=40)
    assert all(len(line) <= 40 for line in plain.splitlines())
    assert "…" in plain
    assert timeline_text(ELECTION, NODES, width=40).plain == plain


def test_restart_lane_comes_back_and_unknown_endpoints_are_labelled() -> None:
    records = [
        {"t": 1.0, "ev": "fault", "kind": "crash", "node": "n1"},
        {"t": 1.5, "ev": "fault", "kind": "restart", "node": "n1", "incarnation": 2},
        {"t": 1.5, "ev": "start", "node": "n1", "incarnation": 2},
        {
            "t": 1.6,
            "ev": "drop",
            "src": "c1",
            "dst": "n2",
            "mid": 0,
            "type": "ClientRequest",
            "msg": "ClientRequest",
            "reason": "crashed",
        },
    ]
    assert render_timeline(records, NODES).splitlines()[1:] == [
        "   1.000    X     |     |    !! crash n1",
        "   1.500    S     |     |    !! restart n1",
        "   1.500    S     |     |    n1 starts (incarnation 2)",
        "   1.600    |     x     |    dropped c1 -> n2 ClientRequest (crashed)",
    ]


def test_a_protocols_own_heartbeats_collapse_when_given() -> None:
    """Which messages are heartbeats comes from the catalog (ViewSpec.heartbeats): ZAB's
    Ping is one there, not by Raft's default."""
    from consensuskit.view.summaries import heartbeat_types

    records = [
        deliver(1.0, "n1", "n2", "Ping", "Ping epoch=1"),
        deliver(1.1, "n2", "n1", "PingAck", "PingAck"),
    ]
    assert len(render_timeline(records, NODES).splitlines()) == 3  # drawn as messages
    collapsed = render_timeline(records, NODES, heartbeat_types=heartbeat_types("zab")).splitlines()
    assert collapsed[1:] == ["   1.100    |     |     |    … 2 heartbeats since 1.000"]
