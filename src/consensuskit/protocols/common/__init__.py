"""Mechanics shared by the leader-based protocols (Raft, Multi-Paxos; next ZAB, PBFT).

One idea per module, each deterministic and I/O free, importing only ``core`` and the
state-machine interface, each tested alone against a naive twin
(``tests/protocols/common``):

  * ``heartbeat_rounds`` - numbered heartbeat rounds, per-peer acks, the quorum round;
  * ``read_index``       - leader reads waiting for a round and for the state machine;
  * ``check_quorum``     - a leader steps down when a quorum went silent;
  * ``config_history``   - the configuration in force at a log position;
  * ``replies``          - the ClientResponse builders (ok, refused, command answers);
  * ``snapshot_policy``  - when to snapshot (a large state less often, amortized);
  * ``batching``         - batches bounded by count and estimated bytes (values included).
"""
