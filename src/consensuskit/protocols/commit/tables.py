"""The transition tables of 2PC and 3PC: state x event -> (actions, next state).

As in h11's ``_state.py``, the protocol is data: the nodes (``node.py``) classify each
input into an event, look the pair up here and run the named actions in order; a pair
that is not in a table is an input the role ignores in that state (a duplicate, a late
message).  The package README's state diagrams are generated from these tables
(``diagrams.py``), so the picture cannot drift from the code.

Rules the tables own (and the transcripts in tests/protocols/commit show):
  * a participant logs its yes vote before sending it (``log-prepared`` precedes
    ``send-yes``) and a coordinator logs a commit decision before sending it
    (``log-commit`` precedes ``send-commit``); the durability driver holds every send
    until the writes made before it are durable;
  * presumed abort (2PC): an abort is neither logged by the coordinator nor
    acknowledged; a coordinator that knows nothing of a transaction answers "aborted";
  * cooperative termination (2PC): an uncertain participant asks the coordinator and
    every other participant; a participant that has not voted aborts (and logs it)
    before it answers, so it can never vote yes afterwards; when every reachable one is
    uncertain the participant is blocked, holding its locks, until someone knows;
  * 3PC: a coordinator pre-commits only after every yes vote and commits after every
    pre-commit acknowledgement or, on a timeout, regardless (a silent participant is
    taken for crashed); a participant that times out starts the termination protocol
    (``TERMINATION_3PC``): it becomes the coordinator of a higher round, collects the
    states of the participants, and decides: any committed -> commit, any aborted (or
    never voted) -> abort, any pre-committed -> pre-commit the rest, then commit; all
    uncertain -> abort.  Safe when failures are crashes; under a partition the two sides
    may decide differently (the seed's anomaly, and ``precommitted x abort`` below).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Transition:
    actions: tuple[str, ...]
    next: str


T = Transition
Table = dict[tuple[str, str], Transition]

# ------------------------------------------------------------------ 2PC coordinator
COORDINATOR_2PC: Table = {
    ("start", "begin"): T(("send-prepare", "arm-timer"), "collecting"),
    ("collecting", "yes"): T((), "collecting"),
    ("collecting", "all-yes"): T(("log-commit", "send-commit", "answer-client", "arm-timer"), "committed"),
    ("collecting", "no"): T(("send-abort", "answer-client"), "aborted"),
    ("collecting", "timeout"): T(("send-abort", "answer-client"), "aborted"),
    ("committed", "ack"): T((), "committed"),
    ("committed", "all-acked"): T(("log-end",), "ended"),
    ("committed", "timeout"): T(("send-commit", "arm-timer"), "committed"),
    ("committed", "recover"): T(("send-commit", "arm-timer"), "committed"),
    ("committed", "inquiry"): T(("reply-commit",), "committed"),
    ("ended", "inquiry"): T(("reply-commit",), "ended"),
    ("aborted", "yes"): T(("reply-abort",), "aborted"),
    ("aborted", "inquiry"): T(("reply-abort",), "aborted"),
    # Presumed abort: no record means no commit was ever logged.
    ("unknown", "yes"): T(("reply-abort",), "unknown"),
    ("unknown", "inquiry"): T(("reply-abort",), "unknown"),
}

# ------------------------------------------------------------------ 2PC participant
PARTICIPANT_2PC: Table = {
    ("unknown", "prepare"): T(("lock", "log-prepared", "send-yes", "arm-timer"), "uncertain"),
    ("unknown", "prepare-refused"): T(("send-no",), "aborted"),
    ("unknown", "abort"): T((), "aborted"),
    ("unknown", "inquiry"): T(("log-abort", "reply-abort"), "aborted"),
    # Never in a correct run: a commit for a transaction whose yes vote was lost.
    ("unknown", "commit"): T(("lost-vote",), "aborted"),
    ("uncertain", "prepare"): T(("send-yes",), "uncertain"),
    ("uncertain", "commit"): T(("log-commit", "apply", "unlock", "send-ack"), "committed"),
    ("uncertain", "abort"): T(("log-abort", "unlock"), "aborted"),
    ("uncertain", "timeout"): T(("ask-everyone", "arm-timer"), "uncertain"),
    ("uncertain", "recover"): T(("lock", "ask-everyone", "arm-timer"), "uncertain"),
    ("uncertain", "inquiry"): T(("reply-uncertain",), "uncertain"),
    ("committed", "commit"): T(("send-ack",), "committed"),
    ("committed", "inquiry"): T(("reply-commit",), "committed"),
    ("aborted", "prepare"): T(("send-no",), "aborted"),
    ("aborted", "inquiry"): T(("reply-abort",), "aborted"),
}

# ------------------------------------------------------------------ 3PC coordinator
COORDINATOR_3PC: Table = {
    ("start", "begin"): T(("send-prepare", "arm-timer"), "collecting"),
    ("collecting", "yes"): T((), "collecting"),
    ("collecting", "all-yes"): T(("send-precommit", "arm-timer"), "precommitting"),
    ("collecting", "no"): T(("send-abort", "answer-client"), "aborted"),
    ("collecting", "timeout"): T(("send-abort", "answer-client"), "aborted"),
    ("precommitting", "ack"): T((), "precommitting"),
    ("precommitting", "all-acked"): T(("log-commit", "send-commit", "answer-client"), "committed"),
    ("precommitting", "timeout"): T(("log-commit", "send-commit", "answer-client"), "committed"),
    ("committed", "recover"): T(("send-commit",), "committed"),
    ("aborted", "yes"): T(("reply-abort",), "aborted"),
}

# ------------------------------------------------------------------ 3PC participant
PARTICIPANT_3PC: Table = {
    ("unknown", "prepare"): T(("lock", "log-prepared", "send-yes", "arm-timer"), "uncertain"),
    ("unknown", "prepare-refused"): T(("send-no",), "aborted"),
    ("unknown", "abort"): T((), "aborted"),
    ("unknown", "state-request"): T(("log-abort", "report"), "aborted"),
    ("unknown", "precommit"): T(("lost-vote",), "aborted"),
    ("unknown", "commit"): T(("lost-vote",), "aborted"),
    ("uncertain", "prepare"): T(("send-yes",), "uncertain"),
    ("uncertain", "precommit"): T(("log-precommitted", "send-precommit-ack", "arm-timer"), "precommitted"),
    ("uncertain", "commit"): T(("log-commit", "apply", "unlock"), "committed"),
    ("uncertain", "abort"): T(("log-abort", "unlock"), "aborted"),
    ("uncertain", "timeout"): T(("start-termination", "arm-timer"), "uncertain"),
    ("uncertain", "recover"): T(("lock", "start-termination", "arm-timer"), "uncertain"),
    ("uncertain", "state-request"): T(("report",), "uncertain"),
    ("precommitted", "precommit"): T(("send-precommit-ack",), "precommitted"),
    ("precommitted", "commit"): T(("log-commit", "apply", "unlock"), "committed"),
    # Only when the two sides of a partition decided differently: the anomaly.
    ("precommitted", "abort"): T(("log-abort", "unlock"), "aborted"),
    ("precommitted", "timeout"): T(("start-termination", "arm-timer"), "precommitted"),
    ("precommitted", "recover"): T(("lock", "start-termination", "arm-timer"), "precommitted"),
    ("precommitted", "state-request"): T(("report",), "precommitted"),
    ("committed", "state-request"): T(("report",), "committed"),
    ("aborted", "prepare"): T(("send-no",), "aborted"),
    ("aborted", "state-request"): T(("report",), "aborted"),
}

# --------------------------------------------------- 3PC termination (the new coordinator)
# The events are the decision rule's verdict over the collected states (node.py,
# ``termination_event``): the first that applies of saw-committed, saw-aborted,
# saw-precommitted, all-uncertain.
TERMINATION_3PC: Table = {
    ("idle", "start"): T(("send-state-request", "arm-timer"), "collecting"),
    ("collecting", "report"): T((), "collecting"),
    ("collecting", "saw-committed"): T(("log-commit", "send-commit"), "done"),
    ("collecting", "saw-aborted"): T(("send-abort",), "done"),
    ("collecting", "saw-precommitted"): T(("send-precommit", "arm-timer"), "precommitting"),
    ("collecting", "all-uncertain"): T(("send-abort",), "done"),
    ("precommitting", "ack"): T((), "precommitting"),
    ("precommitting", "all-acked"): T(("log-commit", "send-commit"), "done"),
    ("precommitting", "timeout"): T(("log-commit", "send-commit"), "done"),
    ("collecting", "superseded"): T((), "idle"),
    ("precommitting", "superseded"): T((), "idle"),
}

TABLES: dict[str, Table] = {
    "2PC coordinator": COORDINATOR_2PC,
    "2PC participant": PARTICIPANT_2PC,
    "3PC coordinator": COORDINATOR_3PC,
    "3PC participant": PARTICIPANT_3PC,
    "3PC termination": TERMINATION_3PC,
}


def step(table: Table, state: str, event: str) -> Transition | None:
    """The transition for ``event`` in ``state``; None: the role ignores it there."""
    return table.get((state, event))
