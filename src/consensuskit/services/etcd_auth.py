"""etcd's authentication on the etcd fronts (gRPC and the JSON gateway): tokens, who a call
runs as, the checks of reads, and the Auth service's operations with etcd's texts.

Rules this module owns (the users, roles and permissions themselves are the etcd state
machine's ``AuthState``, statemachines/mvcc.py; what each op needs:
statemachines/mvcc_auth.py):
  * one set of users per cluster: the Auth service here, the HTTP ``/v1/auth`` routes and
    ``consensuskit auth`` manage the same ``AuthState``, through the log;
  * a call names its user with a token in its gRPC metadata, ``token`` (or
    ``authorization``: the gateway's ``Authorization`` header), obtained from
    ``Authenticate``.  The token is the HTTP API's (server/auth.py): every node checks
    it, it lasts ``auth.token_ttl`` and dies with its user's password or a re-enable.
    The admin token counts as root.  While this node's state has auth disabled, any
    other token is refused "invalid auth token" as etcd 3.4 refuses it (its token
    store is empty then: disabling drops every token), except on the calls etcd never
    reads a token for (``TOKEN_UNREAD``: Status, MemberList, LeaseLeases,
    LeaseTimeToLive, LeaseKeepAlive, Authenticate), where it is ignored.  Of those,
    Status, MemberList and Authenticate need no user here either (``NEEDS_NOBODY``):
    any token but the admin's is ignored there with auth enabled too, as etcd ignores
    it, so a bad or expired one is no error (checked against etcd 3.4).  The lease calls
    need a user here while auth is enabled (stricter than etcd on purpose), so they
    read the token then, and a bad one is "invalid auth token" (a client signs in again);
  * who a call runs as (``Caller``) is set per call by the front in ``CALLER``, a
    context variable: the tasks a call starts inherit it, so its lock, election and
    watch steps run as its client.  Its default is nobody; the node's own calls (the
    lessor's expiries) set ``INTERNAL``, the admin principal;
  * a write carries its caller's principal into the log and is judged where it is
    applied, nowhere before (an early check against this node's state could refuse what
    the log allows).  A read is judged here once served, i.e. once this node applied up
    to its read index, as the HTTP edge does.  Reading users and roles needs the root
    role, except a user's own record and the roles it holds (etcd's UserGet, RoleGet);
  * errors are etcd's (api/v3rpc/rpctypes): no user while auth is enabled
    INVALID_ARGUMENT "user name is empty"; a bad, expired or retired token
    UNAUTHENTICATED "invalid auth token" (etcd's clients then sign in again); a missing
    permission PERMISSION_DENIED "permission denied";
  * a call forwarded to the leader (services/etcd_api.py) carries its caller's
    principal and an HMAC of the call under a key derived from the cluster secret; the
    leader runs it as that principal only if the HMAC holds (the forward route is
    reachable by anyone who reaches the gateway), and as nobody when none is sent (a
    node of an earlier release);
  * ``Authenticate`` reads the user linearizably (the password record never leaves the
    node) and checks the password off the event loop; an unknown user costs the same as
    a wrong password.  Auth disabled: FAILED_PRECONDITION "authentication is not
    enabled" (etcd's clients then go on without a token);
  * etcd grants a permission on one key, a range or a prefix: a prefix is kept as a
    prefix (the HTTP API shows it so), the others as a range
    (statemachines/auth.py).  The root role is built in: adding it answers OK and
    changes nothing (scripts written for etcd add it first, and etcdctl's ``auth
    enable`` adds it when the root user lacks it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consensuskit.core.client import (
    INVALID_TOKEN,
    PERMISSION_DENIED,
    UNAUTHENTICATED,
    VIA_ADMIN,
    VIA_CERTIFICATE,
    VIA_TOKEN,
    Principal,
)
from consensuskit.server.auth import check_password, hash_password, mint_token, verify_password
from consensuskit.services.etcd_errors import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    TIMEOUT,
    UNAVAILABLE,
    EtcdError,
)
from consensuskit.services.etcd_errors import PERMISSION_DENIED as PERMISSION_DENIED_STATUS
from consensuskit.services.etcd_errors import UNAUTHENTICATED as UNAUTHENTICATED_STATUS
from consensuskit.statemachines.auth import AUTH, AUTH_READ, ROOT, AuthState, next_prefix, valid_name
from consensuskit.statemachines.mvcc import prefix_end
from consensuskit.statemachines.mvcc_auth import ANY_USER, ROOT_ONLY, key_text, needs, text_key

if TYPE_CHECKING:
    from consensuskit.services.etcd_api import EtcdNode

TOKEN_METADATA = ("token", "authorization")  # etcd's TokenFieldNameGRPC and TokenFieldNameSwagger
MAC_HEADER = "X-Consensuskit-Forward-Mac"

USER_EMPTY = "etcdserver: user name is empty"
INVALID_AUTH_TOKEN = "etcdserver: invalid auth token"
PERMISSION_DENIED_TEXT = "etcdserver: permission denied"
AUTH_FAILED = "etcdserver: authentication failed, invalid user ID or password"
AUTH_NOT_ENABLED = "etcdserver: authentication is not enabled"
ROOT_USER_MISSING = "etcdserver: root user does not exist"
ROOT_ROLE_MISSING = "etcdserver: root user does not have root role"

# The refusals of the state machine (sessions' and AuthState's codes) -> etcd's errors.
ERRORS: dict[str, tuple[int, str]] = {
    UNAUTHENTICATED: (INVALID_ARGUMENT, USER_EMPTY),
    INVALID_TOKEN: (UNAUTHENTICATED_STATUS, INVALID_AUTH_TOKEN),
    PERMISSION_DENIED: (PERMISSION_DENIED_STATUS, PERMISSION_DENIED_TEXT),
    "user-exists": (FAILED_PRECONDITION, "etcdserver: user name already exists"),
    "user-not-found": (FAILED_PRECONDITION, "etcdserver: user name not found"),
    "role-exists": (FAILED_PRECONDITION, "etcdserver: role name already exists"),
    "role-not-found": (FAILED_PRECONDITION, "etcdserver: role name not found"),
    "role-not-granted": (FAILED_PRECONDITION, "etcdserver: role is not granted to the user"),
    "permission-not-granted": (FAILED_PRECONDITION, "etcdserver: permission is not granted to the role"),
    "root-protected": (INVALID_ARGUMENT, "etcdserver: invalid auth management"),
    "root-required": (FAILED_PRECONDITION, ROOT_ROLE_MISSING),
}
# The calls etcd 3.4 serves without reading their token (so a bad one is never refused
# while auth is disabled): checked against etcd 3.4, call by call.
TOKEN_UNREAD = frozenset(
    {"Status", "MemberList", "LeaseLeases", "LeaseTimeToLive", "LeaseKeepAlive", "Authenticate"}
)
# Of those, the calls that need no user here either: a token is ignored on them always.
NEEDS_NOBODY = frozenset({"Status", "MemberList", "Authenticate"})
PERMISSION_TYPES = ("read", "write", "readwrite")  # authpb.Permission.Type's numbers


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call runs as: ``principal`` as the log carries it (None: nobody)."""

    principal: Principal | None


NOBODY = Caller(None)
INTERNAL = Caller(Principal(name="", via=VIA_ADMIN))
CALLER: ContextVar[Caller] = ContextVar("consensuskit.etcd.caller", default=NOBODY)


class EtcdAuth:
    """The auth part of one node's etcd API (see the module rules)."""

    def __init__(self, node: EtcdNode) -> None:
        self.node = node

    @property
    def state(self) -> AuthState | None:
        return self.node.api.auth.state

    @property
    def enabled(self) -> bool:
        state = self.state
        return state is not None and state.enabled

    # ------------------------------------------------------------------ callers
    async def caller_of(self, token: str | None, method: str | None = None) -> Caller:
        """The caller a token names (None: nobody) on a call of ``method`` (its bare
        name, "Range"; None: one that reads tokens); ``EtcdError`` for a bad one."""
        from consensuskit.server.http_api import ApiError

        if not token:
            return NOBODY
        gate = self.node.api.auth
        admin = self.node.api.config.admin_token
        if admin is not None and hmac.compare_digest(token.encode("utf-8", "replace"), admin.encode()):
            return INTERNAL
        if method in NEEDS_NOBODY:  # etcd never reads it there, auth enabled or not
            return NOBODY
        if not self.enabled:  # no token is good while auth is off (module rules)
            if method in TOKEN_UNREAD:
                return NOBODY
            raise EtcdError(UNAUTHENTICATED_STATUS, INVALID_AUTH_TOKEN)
        try:
            principal = await gate.token_user(token)
        except ApiError as exc:
            if exc.code == "timeout":
                raise EtcdError(UNAVAILABLE, TIMEOUT) from None
            raise EtcdError(UNAUTHENTICATED_STATUS, INVALID_AUTH_TOKEN) from None
        return Caller(principal.wire)

    @staticmethod
    def token_in(metadata: Any) -> str | None:
        """The token of a call's metadata (pairs of name, value), if any."""
        for name, value in metadata or ():
            if name in TOKEN_METADATA and isinstance(value, str) and value:
                return value
        return None

    # ------------------------------------------------------------------ checks
    def check_read(self, kind: str, body: Any) -> None:
        """Raise unless the current caller may see what a read of ``kind`` answered (by
        this node's state, once the read was served: module rules).  Auth's reads are
        the root role's while auth is enabled, the status too (etcd's
        ``needAdminPermission``), except that a user may read its own record and the roles
        it holds, as in etcd (its auth applier's UserGet and RoleGet)."""
        if kind == AUTH_READ:
            self.require(self._auth_read_needs(body.get("action"), (body.get("args") or [None])[0]))
        else:
            self.require(needs(kind, body))

    def _auth_read_needs(self, action: Any, name: Any) -> Any:
        state = self.state
        if state is not None and state.reads_own(CALLER.get().principal, action, name):
            return ANY_USER  # still a valid caller: check_spans refuses a retired token
        return ROOT_ONLY

    def require(self, wanted: Any) -> None:
        """Raise unless the current caller may do every ``(need, keys)`` of ``wanted``."""
        state = self.state
        if state is None or not state.enabled:
            return
        refused = state.check_spans(CALLER.get().principal, wanted)
        if refused is not None:
            raise refusal(refused["error"])

    # ------------------------------------------------------------------ forwarding
    def sign(self, payload: bytes) -> str:
        """The HMAC a forwarded call carries (module rules)."""
        return hmac.new(self.node.api.auth.key, b"etcd-forward\0" + payload, hashlib.sha256).hexdigest()

    def forwarded_caller(self, principal: Any, payload: bytes, mac: str | None) -> Caller:
        """The caller a forwarded call names, if its HMAC holds (module rules)."""

        if mac is None:
            return NOBODY
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self.sign(payload).encode()):
            raise EtcdError(INVALID_ARGUMENT, "etcdserver: forwarded call with a bad signature")
        if principal is None:
            return NOBODY
        name, via, rev = principal
        if via not in (VIA_ADMIN, VIA_TOKEN, VIA_CERTIFICATE):
            raise EtcdError(INVALID_ARGUMENT, f"etcdserver: forwarded call from {via!r}")
        return Caller(Principal(name=str(name), via=str(via), rev=int(rev)))

    # ------------------------------------------------------------------ the Auth service
    async def change(self, action: str, *args: Any) -> dict[str, Any]:
        return await self.node.call(AUTH, {"action": action, "args": list(args)})

    async def read(self, what: str, arg: Any = None) -> dict[str, Any]:
        return await self.node.call(AUTH_READ, {"action": what, "args": [arg]})

    async def status(self) -> dict[str, Any]:
        return await self.read("status")

    async def authenticate(self, name: str, password: str) -> str:

        if not name:
            raise EtcdError(INVALID_ARGUMENT, USER_EMPTY)
        token = CALLER.set(INTERNAL)  # the record is read by the node, for the node
        try:
            record = await self.read("user", name) if valid_name(name) else {}
        except EtcdError as exc:
            if exc.message != ERRORS["user-not-found"][1]:
                raise
            record = {}
        finally:
            CALLER.reset(token)
        if not self.enabled:
            raise EtcdError(FAILED_PRECONDITION, AUTH_NOT_ENABLED)
        config = self.node.api.config.auth
        stored = record.get("password")
        # An unknown user (or one without a password) costs what a wrong password costs.
        dummy = ("pbkdf2-sha256", config.password_iterations, b"\0" * 16, b"\0" * 32)
        ok = await asyncio.to_thread(verify_password, stored or dummy, password)
        if not ok or stored is None:
            raise EtcdError(INVALID_ARGUMENT, AUTH_FAILED)
        expires = time.time() + config.token_ttl
        return mint_token(self.node.api.auth.key, name, int(record["revision"]), expires)

    async def user_add(self, name: str, password: str, no_password: bool) -> dict[str, Any]:
        self._name(name, "user")
        record = None if no_password else await self._hash(password)
        return await self.change("user-add", name, record)

    async def user_change_password(self, name: str, password: str) -> dict[str, Any]:
        self._name(name, "user")
        return await self.change("user-password", name, await self._hash(password))

    async def role_add(self, name: str) -> dict[str, Any]:
        self._name(name, "role")
        if name == ROOT:  # built in: nothing to add, for whoever may manage auth (module rules)
            self.require(ROOT_ONLY)
            return {}
        return await self.change("role-add", name)

    async def enable(self) -> dict[str, Any]:

        try:
            return await self.change("enable")
        except EtcdError as exc:
            if exc.message != ROOT_ROLE_MISSING:
                raise
            try:
                await self.read("user", ROOT)
            except EtcdError as missing:
                if missing.message == ERRORS["user-not-found"][1]:
                    raise EtcdError(FAILED_PRECONDITION, ROOT_USER_MISSING) from None
                raise
            raise

    async def grant_permission(self, role: str, perm_type: int, key: bytes, end: bytes) -> dict[str, Any]:

        self._name(role, "role")
        if perm_type not in range(len(PERMISSION_TYPES)):
            raise EtcdError(INVALID_ARGUMENT, "etcdserver: invalid permission type")
        permission = PERMISSION_TYPES[perm_type]
        start, stop = key_text(key), key_text(end)
        if _is_prefix(start, stop):
            return await self.change("role-grant", role, start, permission)
        return await self.change("role-grant-range", role, start, stop, permission)

    async def revoke_permission(self, role: str, key: bytes, end: bytes) -> dict[str, Any]:
        self._name(role, "role")
        start, stop = key_text(key), key_text(end)
        if _is_prefix(start, stop):
            return await self.change("role-revoke", role, start)
        return await self.change("role-revoke-range", role, start, stop)

    @staticmethod
    def role_permissions(view: dict[str, Any]) -> list[tuple[int, bytes, bytes]]:
        """A role's permissions as etcd's (type, key, range_end); the root role shows none,
        as in etcd."""
        if view.get("builtin"):
            return []
        out = []
        for perm in view["permissions"]:
            kind = PERMISSION_TYPES.index(perm["permission"])
            if "prefix" in perm:
                start = perm["prefix"]
                stop = next_prefix(start)
                out.append((kind, _etcd_key(start), b"\0" if stop is None else prefix_end(_etcd_key(start))))
            else:
                out.append((kind, _etcd_key(perm["key"]), _etcd_key(perm["range_end"])))
        return out

    async def _hash(self, password: str) -> Any:

        problem = check_password(password)
        if problem:
            raise EtcdError(INVALID_ARGUMENT, f"etcdserver: {problem}")
        iterations = self.node.api.config.auth.password_iterations
        return await asyncio.to_thread(hash_password, password, iterations)

    @staticmethod
    def _name(name: str, what: str) -> None:

        if not name:
            raise EtcdError(INVALID_ARGUMENT, f"etcdserver: {what} name is empty")
        if not valid_name(name):
            raise EtcdError(
                INVALID_ARGUMENT,
                f"etcdserver: bad {what} name: 1-128 of A-Z a-z 0-9 _ . @ + = - (spaces inside)",
            )


def _is_prefix(start: str, stop: str) -> bool:
    """Is etcd's range ``[start, stop)`` the keys starting with ``start``?"""
    return (bool(stop) and stop == next_prefix(start)) or (not start and stop == "\0")


def _etcd_key(text: str) -> bytes:
    """A key or prefix of ``AuthState`` as etcd bytes: one byte per character, or UTF-8
    for a prefix granted through the HTTP API with characters beyond one byte."""
    try:
        return text_key(text)
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def refusal(code: str, message: str | None = None) -> Any:
    """The ``EtcdError`` for a refusal or an auth result's error ``code``."""

    grpc_code, text = ERRORS.get(code, (INVALID_ARGUMENT, f"etcdserver: {message or code}"))
    return EtcdError(grpc_code, text)
