"""Which data directory each peer runs on, so a node that lost its disk cannot come back
as if it were new.

A node's promises (votes, acknowledgements, a participant's commit vote) live in its
data directory.  ``--rejoin`` brings a Raft or Multi-Paxos node back on an empty one
safely (it votes only once caught up: server/identity.py), but nothing stopped an
operator from starting it with ``--bootstrap`` instead (the flag of a cluster's first
start, one word away in the same error message), or a second process from running with a
copied config: either votes with an empty log and, with a stale peer, can elect a leader
that lacks acknowledged writes.  etcd refuses such a member at start ("member has
already been bootstrapped"); here the peers that knew the node refuse it.

Rules this module owns:
  * every data directory has an incarnation and an origin (identity.json); a node sends
    both to each peer it dials (``PeerIncarnation``, after its PeerHello), with the
    incarnation it knows that peer by;
  * ``incarnations.json`` in the data directory, ``{"format": 1, "peers": {node:
    incarnation}}``, keeps the incarnation this node first accepted for each peer,
    written atomically when it changes (rarely: once per peer per directory);
  * the judgment (``IncarnationBook.judge``), once per connection: a peer not known
    yet, or known by this incarnation, is accepted (the first is recorded); a malformed
    incarnation (not 1-64 printable ASCII characters) is refused; another incarnation is
    accepted (and recorded) only when its directory began with ``--rejoin``, the one way
    a node comes back safely.  Any other is refused: its connection is foreign (transport.py:
    every message dropped, the reason in ``/v1/status`` ``peers.ID.refused`` and logged
    once per connection).  It stays refused whatever it does: the remedy is to stop it
    and start it on an empty directory with ``--rejoin`` or, for a protocol without it
    (the catalog's ``survives_disk_loss``), to replace it by a node of another id;
  * first of all, a peer whose directory founded a cluster of other members than this
    node's did (both began with ``--bootstrap``; identity.py's ``founders``) is refused,
    and not recorded: the two were started from configs whose ``members`` differ, and
    would form overlapping clusters, each able to elect a leader and acknowledge writes
    the other never sees.  Both sides refuse each other and log why, naming both lists;
    a malformed list (more than MAX_FOUNDERS ids, or an id that is not 1-64 printable
    ASCII characters) is refused too;
  * a node told by a peer that it is known by another incarnation, while its own
    directory did not begin with ``--rejoin``, logs why that peer refuses it and what to
    do (once per connection): the operator sees the cause on the node they started;
  * every protocol's node keeps a book but those whose nodes forget nothing their peers
    cannot give back (the catalog's ``amnesia_safe``: gossip, SWIM).  A protocol without
    ``--rejoin`` (ZAB, Basic Paxos, the commit protocols, ...) cannot take a wiped node
    back under its id at all: refusing it is what keeps its acknowledged writes, and the
    refusal says to replace it;
  * a missing file is nothing known (a fresh directory, an earlier release's); an
    unreadable or malformed one is ignored with a warning (the node then knows no peer
    yet: no worse off than the previous release).  A peer without a PeerIncarnation (an
    earlier release) is judged by its hello alone, as before.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from consensuskit.server.peer_hello import (
    ORIGIN_BOOTSTRAP,
    ORIGIN_EARLIER,
    ORIGIN_JOIN,
    ORIGIN_REJOIN,
    PeerIncarnation,
)
from consensuskit.server.wal import write_file_atomically

log = logging.getLogger("consensuskit.server")

INCARNATIONS_NAME = "incarnations.json"
INCARNATIONS_FORMAT = 1


class IncarnationBook:
    """This node's incarnation, and the ones it has accepted for its peers (the rules above)."""

    __slots__ = (
        "_directory",
        "_fsync",
        "_peers",
        "founders",
        "incarnation",
        "node_id",
        "origin",
        "protocol",
        "rejoins",
        "replaceable",
    )

    def __init__(
        self,
        node_id: str,
        incarnation: str,
        origin: str,
        directory: Path,
        *,
        fsync: bool = True,
        protocol: str = "raft",
        rejoins: bool = True,
        replaceable: bool = True,
        founders: tuple[str, ...] = (),
    ) -> None:
        """``rejoins``: ``protocol`` takes a node back after a disk loss (--rejoin);
        ``replaceable``: its nodes change membership.  The refusals name the ways out
        that the protocol has.  ``founders``: the members this node's directory was
        bootstrapped with (empty: it was not)."""
        self.node_id = node_id
        self.founders = tuple(sorted(founders))
        self.incarnation = incarnation
        self.origin = origin
        self.protocol = protocol
        self.rejoins = rejoins
        self.replaceable = replaceable
        self._directory = Path(directory)
        self._fsync = fsync
        self._peers = read_incarnations(self._directory)

    def known(self, peer: str) -> str | None:
        return self._peers.get(peer)

    def introduce(self, peer: str) -> PeerIncarnation:
        """What this node tells ``peer`` on a connection it dials."""
        return PeerIncarnation(self.incarnation, self.origin, self._peers.get(peer, ""), self.founders)

    def judge(self, peer: str, said: PeerIncarnation) -> str | None:
        """Why messages from ``peer`` saying ``said`` must be dropped (None: take them)."""
        other_cluster = self._other_cluster(said.founders)
        if other_cluster is not None:
            return other_cluster
        known = self._peers.get(peer)
        if said.incarnation == known:
            return None
        if not _well_formed(said.incarnation):
            return f"its data directory's incarnation is malformed ({said.incarnation[:80]!r})"
        if known is not None and said.origin != ORIGIN_REJOIN:
            return (
                f"it runs on data directory {said.incarnation}, made {_made(said.origin)}, but this "
                f"node knew {peer} on {known}: a node that lost its disk has forgotten what it promised "
                f"(votes, acknowledged writes). Stop it: if {peer} lost its disk, "
                f"{self._way_back(peer)}; if it is a second process running as {peer}, leave it stopped"
            )
        if known is not None:
            log.warning(
                "node %s: peer %s came back on a new data directory (%s, was %s) by --rejoin",
                self.node_id,
                peer,
                said.incarnation,
                known,
            )
        self._record(peer, said.incarnation)
        return None

    def _other_cluster(self, theirs: tuple[str, ...]) -> str | None:
        if (
            not isinstance(theirs, tuple)
            or len(theirs) > MAX_FOUNDERS
            or not all(isinstance(f, str) and _well_formed(f) for f in theirs)
        ):
            return f"its list of founding members is malformed ({str(theirs)[:80]})"
        if not self.founders or not theirs or set(theirs) == set(self.founders):
            return None
        return (
            f"it was bootstrapped as a member of a cluster of {', '.join(sorted(theirs))}, this node "
            f"of {', '.join(self.founders)}: nodes started with --bootstrap from configs whose "
            "members differ form different clusters, each able to elect a leader and acknowledge "
            "writes the other never sees. Stop the node whose members setting is wrong, correct it, "
            "and start it on an empty directory with --bootstrap (what it acknowledged on its own "
            "was never this cluster's); a node being added to a running cluster is left out of "
            "members and started without --bootstrap: it joins as a learner"
        )

    def refused_here(self, peer: str, said: PeerIncarnation) -> str | None:
        """Why ``peer`` (which said ``said``) refuses this node, when it will (None: it
        will not, or this node came back by --rejoin and the peer learns that itself)."""
        if not said.known_as or said.known_as == self.incarnation or self.origin == ORIGIN_REJOIN:
            return None
        return (
            f"peer {peer} knew this node on data directory {said.known_as}, not this one "
            f"({self.incarnation}, made {_made(self.origin)}), and drops its messages. If "
            f"{self.node_id} lost its disk, stop it and {self._way_back(self.node_id)}; if "
            f"another process runs as {self.node_id}, stop this one"
        )

    def _way_back(self, node: str) -> str:
        if self.rejoins:
            return f"start {node} again on an empty directory with --rejoin"
        if self.replaceable:
            return (
                f"replace it: {self.protocol} cannot take a node back after a disk loss (no --rejoin), "
                f"so add a node under another id and remove {node}, or restore a backup into a new cluster"
            )
        return (
            f"{self.protocol} cannot take a node back after a disk loss (no --rejoin) nor replace "
            "it (no membership change): restore a backup into a new cluster"
        )

    def _record(self, peer: str, incarnation: str) -> None:
        self._peers[peer] = incarnation
        body = {"format": INCARNATIONS_FORMAT, "peers": dict(sorted(self._peers.items()))}
        try:
            write_file_atomically(
                self._directory / INCARNATIONS_NAME,
                (json.dumps(body, sort_keys=True) + "\n").encode(),
                fsync=self._fsync,
            )
        except OSError as exc:  # kept in memory only: a restart forgets it
            log.warning(
                "node %s: cannot keep peer incarnations in %s: %s", self.node_id, self._directory, exc
            )


MAX_INCARNATION_CHARS = 64
MAX_FOUNDERS = 256  # more initial voters than any cluster has: a list longer is garbage


def _well_formed(incarnation: str) -> bool:
    """1-64 printable ASCII characters: what identity.json holds (16 hex digits) and fits
    a log line and incarnations.json."""
    return (
        0 < len(incarnation) <= MAX_INCARNATION_CHARS and incarnation.isascii() and incarnation.isprintable()
    )


_MADE = {
    ORIGIN_BOOTSTRAP: "by --bootstrap",
    ORIGIN_JOIN: "empty for a node outside the initial members",
    ORIGIN_EARLIER: "by an earlier release",
}


def _made(origin: str) -> str:
    return _MADE.get(origin, f"(origin {origin[:40]!r})")


def read_incarnations(directory: Path) -> dict[str, str]:
    """The peers' incarnations ``directory`` keeps ({} when none: see the module rules)."""
    path = Path(directory) / INCARNATIONS_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("ignoring %s: cannot read it: %s", path, exc.strerror)
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    peers = data.get("peers") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("format") != INCARNATIONS_FORMAT
        or not isinstance(peers, dict)
        or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in peers.items())
    ):
        log.warning("ignoring %s: not an incarnations file of format %d", path, INCARNATIONS_FORMAT)
        return {}
    return dict(peers)
