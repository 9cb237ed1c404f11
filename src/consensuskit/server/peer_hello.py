"""PeerHello: what a node says about itself at the start of each connection it dials.

The handshake (handshake.py) proves a peer holds the cluster secret; it says nothing about
what the peer runs.  A node whose config names another protocol (a typo in one
hand-written config, a node rebuilt with the wrong file) speaks messages its peers'
protocol ignores, so it sits silent; one that names another *service* on the same
protocol is worse: its messages are understood, and it applies the same log to another
state machine, its answers diverging from every other replica's.  So:

Rules this module owns:
  * every node sends ``PeerHello(protocol, service, cluster_id, release)`` at the start
    of every connection it dials, after its PeerLevel (below) and before any queued
    frame (transport.py);
  * a receiver compares it with its own (``refusal``): another protocol or service, or
    another cluster id when both know one, makes the connection *foreign*: every message
    on it is dropped and counted (``dropped_foreign``), the reason is logged once per
    connection and shown in ``/v1/status`` (``peers.ID.refused``), and the peer does not
    count as connected.  The connection stays open: closing it would only have the peer
    redial and both logs repeat the same line every second;
  * each side checks the hello of the connection the other dialed, so both logs name
    the mismatch;
  * ``release`` is informational (logged with a refusal);
  * a connection without a hello (an earlier release's node) is accepted as before;
    such a node skips the hello (an unknown tag: one warning per connection, and the
    connection stays: transport.py);
  * a node that keeps an incarnation book (server/incarnations.py) sends
    ``PeerIncarnation`` right after its hello: which data directory it runs on and how
    that directory began, the members its cluster was bootstrapped with when it was one
    of them, and which directory it knows the receiver by.  A new message, not fields
    appended to PeerHello: an earlier release refuses a frame with more fields than it
    knows (and drops the connection), but skips a tag it does not know;
  * every node opens each connection it dials with ``PeerLevel``, before its hello: the
    highest cluster level it agrees to and the highest its release applies
    (server/cluster_level.py).  A connection whose first frame is another is an earlier
    release's (``EARLIER``: level 1 both), known at once; an earlier release skips the
    unknown tag and judges the hello after it as before.

Tags 200-209 belong to the server; append new ones, never reuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensuskit.core.messages import message


@message(200)
@dataclass(frozen=True, slots=True)
class PeerHello:
    protocol: str
    service: str
    cluster_id: str  # "" when the node's config names none
    release: str

    def refusal(self, theirs: PeerHello) -> str | None:
        """Why a node saying ``self`` must not take messages from one saying ``theirs``
        (None: it may).  One line naming both sides."""
        if (theirs.protocol, theirs.service) != (self.protocol, self.service):
            return (
                f"it runs protocol {theirs.protocol!r} with service {theirs.service!r} (release "
                f"{theirs.release}), this node protocol {self.protocol!r} with service "
                f"{self.service!r}: every node of a cluster needs the same protocol and service"
            )
        if self.cluster_id and theirs.cluster_id and theirs.cluster_id != self.cluster_id:
            return (
                f"it belongs to cluster {theirs.cluster_id}, this node to {self.cluster_id} "
                "(a config of another cluster holding this cluster's secret?)"
            )
        return None


# How a data directory began (server/identity.py writes it into identity.json).
ORIGIN_BOOTSTRAP = "bootstrap"  # --bootstrap: the first start of a new cluster
ORIGIN_REJOIN = "rejoin"  # --rejoin: a replacement for a lost disk, votes once readmitted
ORIGIN_JOIN = "join"  # an empty directory of a node not among the initial voters
ORIGIN_EARLIER = "earlier"  # written before directories recorded their incarnation
ORIGINS = (ORIGIN_BOOTSTRAP, ORIGIN_REJOIN, ORIGIN_JOIN, ORIGIN_EARLIER)


@message(201)
@dataclass(frozen=True, slots=True)
class PeerIncarnation:
    """The sender's data directory (``incarnation``, made when the directory was) and how
    it began (``origin``, one of ORIGINS), the incarnation the sender knows the receiver by
    (``known_as``; "" when it knows none), and the members the sender's directory was
    bootstrapped with (``founders``, sorted; empty unless its origin is bootstrap)."""

    incarnation: str
    origin: str
    known_as: str
    founders: tuple[str, ...] = ()


@message(202)
@dataclass(frozen=True, slots=True)
class PeerLevel:
    """The highest cluster level the sender agrees to raise the cluster's to (its
    ``cluster_level`` setting: ``offered``) and the highest its release applies
    (``applies``; statemachines/levels.py)."""

    offered: int
    applies: int


EARLIER = PeerLevel(1, 1)  # what a connection without a PeerLevel says: a release before levels
