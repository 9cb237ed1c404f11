"""etcd's errors as the etcd fronts answer them: gRPC status codes (grpc.StatusCode values,
so no module that raises needs a grpc import) and ``EtcdError``.

Its own module so that services/etcd_api.py and the modules it imports
(etcd_auth.py, etcd_recipes.py) raise the same class without importing each other.
"""

from __future__ import annotations

from typing import Any

OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 2, 3, 4, 5
PERMISSION_DENIED, FAILED_PRECONDITION, OUT_OF_RANGE, UNIMPLEMENTED = 7, 9, 11, 12
INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 13, 14, 16

NO_LEADER = "etcdserver: no leader"
TIMEOUT = "etcdserver: request timed out"
LEADER_CHANGED = "etcdserver: leader changed"


class EtcdError(Exception):
    """A call's failure: a gRPC status ``code``, etcd's text, and fields a front adds
    to its answer (``compact_revision``)."""

    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra
