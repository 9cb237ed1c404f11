"""A node's open-file budget: client connections must never take the descriptors its
storage needs.

A node out of file descriptors cannot open its next snapshot file or WAL segment, and a
storage write that fails halts the node (wal.py: after an I/O error nothing is retried).
With the default ``max_connections`` (1024) and a soft limit of 1024 open files (the
usual default for a login shell and for systemd services), 1024 idle client
connections halted a node at its next snapshot ("Too many open files"), and every
request meanwhile was refused at accept.  etcd does not meet this: Go's runtime raises
its soft limit to the hard one at start.

Rules this module owns:
  * ``raise_open_file_limit``: at start the soft RLIMIT_NOFILE is raised to the hard
    limit (as Go's runtime does), logged when it changes; a platform without it, or a
    refusal, leaves the limit as it is;
  * ``connection_cap``: ``RESERVED_FILES`` descriptors are kept for everything but
    client connections (the WAL and its files, the peer connections and up to 128
    pending peer handshakes, the listeners, the gRPC server's, the log); the rest are
    shared by the client listeners (HTTP, and the service's own: etcd's gRPC, whose
    server takes the same cap).  ``max_connections`` above a listener's share is lowered
    to it, with one warning naming the setting, the limit and how to raise it; with a
    limit too small for the reserve, a quarter of the limit is shared;
  * the storage keeps one descriptor of its own in reserve for a file it must open when
    the process is out of them anyway (wal.py), for what no cap bounds.
"""

from __future__ import annotations

import logging

log = logging.getLogger("consensuskit.server")

RESERVED_FILES = 256

try:
    import resource
except ImportError:  # pragma: no cover - not on this project's platforms (Linux, macOS)
    resource = None  # type: ignore[assignment]


def open_file_limit() -> int | None:
    """The process's soft limit on open files (None: unknown or unlimited)."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_file_limit() -> int | None:
    """Raise the soft limit to the hard one; return the soft limit now in force."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. macOS caps it below its hard limit
            log.info("open-file limit stays %d (raising it to %d failed: %s)", soft, hard, exc)
        else:
            log.info("raised the open-file limit from %d to %d (the hard limit)", soft, hard)
    return open_file_limit()


def connection_cap(requested: int, limit: int | None, listeners: int = 1) -> int:
    """The most client connections each of ``listeners`` client listeners may hold under
    an open-file ``limit``."""
    if limit is None:
        return requested
    available = limit - RESERVED_FILES
    if available <= 0:
        available = max(1, limit // 4)
    available = max(1, available // max(1, listeners))
    if requested <= available:
        return requested
    log.warning(
        "max_connections %d lowered to %d: the open-file limit is %d and %d descriptors are "
        "kept for the node's storage and peers%s (raise the limit: ulimit -n, or LimitNOFILE= "
        "in a systemd unit)",
        requested,
        available,
        limit,
        RESERVED_FILES,
        f", the rest shared by its {listeners} client listeners" if listeners > 1 else "",
    )
    return available
