"""Authentication and authorization of HTTP clients, and the ``/v1/auth/...`` routes.

Rules this module owns (credentials themselves: ``server/auth.py``; the replicated users,
roles and permissions: ``statemachines/auth.py``):
  * with auth disabled (the default, and ``consensuskit up``'s) nothing here looks at a
    request: every key, ``/v1/status`` and ``/metrics`` answer as before;
  * with auth enabled, a key-value request needs a user: ``Authorization: Bearer TOKEN``
    (from ``POST /v1/auth/token``), or else a verified client certificate whose CN is a
    user.  None gives 401 ``unauthenticated``; a bad or expired token 401
    ``invalid-token`` / ``token-expired``; a user without the permission 403
    ``permission-denied``.  get and listings need read, put and delete write, a
    compare-and-swap both (a failed one answers the current value).  The role ``root``
    may do everything;
  * the admin token (``admin_token_file``) is the operator's credential: it counts as
    root everywhere, and it alone may manage auth while auth is disabled (when the node
    has none, auth management is open while auth is disabled, as in etcd);
  * who decides: the edge authenticates (token MAC and expiry, certificate) and answers
    the obvious refusals early against this node's applied auth state; a write carries
    the principal it authenticated (``core.client.Principal``: user, how, the token's
    revision) into the log, and the state machine that applies it decides
    (``AuthState.judge``), so a follower that has not applied ``enable``, a revoke, a
    deleted user or a new password yet cannot let through what the log refuses: such a
    write is refused where it is applied, with the same status and code as here.  While
    this node's state says auth is off, credentials a request brings are still read (and
    carried) but never refused.  A read is judged here, again after it was served, i.e.
    once this node applied up to its read index.  A token issued at a revision this node
    has not applied yet waits (up to ``request_timeout``) until it has, so a token is
    good on every node at once;
  * auth management goes through the log like any write (a follower passes it on where
    its protocol forwards, else answers 421; ``X-Request-Id`` makes retries safe); its
    reads (and the token route) are linearizable reads; no answer ever carries a password hash.
    Reading users and roles needs root, except a user's own record and the roles it
    holds (as etcd's UserGet and RoleGet allow).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from consensuskit.core.client import (
    INVALID_TOKEN,
    LINEARIZABLE,
    PERMISSION_DENIED,
    VIA_ADMIN,
    VIA_CERTIFICATE,
    VIA_TOKEN,
    Op,
)
from consensuskit.core.client import Principal as WirePrincipal
from consensuskit.server.auth import (
    TokenError,
    certificate_user,
    check_password,
    hash_password,
    mint_token,
    read_token,
    token_key,
    verify_password,
)
from consensuskit.server.http_api import NOT_APPLIED, ApiError, _json_object, _ok, _only_params
from consensuskit.statemachines.auth import (
    ADMINISTER,
    AUTH,
    AUTH_READ,
    MAX_PREFIX,
    PERMISSIONS,
    READ,
    READWRITE,
    WRITE,
    AuthState,
    User,
    valid_name,
)

if TYPE_CHECKING:
    from consensuskit.server.http_api import NodeApi

# Refusals of the auth state machine -> HTTP status.
_STATUS = {
    "bad-command": 400,
    "user-not-found": 404,
    "role-not-found": 404,
    "role-not-granted": 404,
    "permission-not-granted": 404,
    "user-exists": 409,
    "role-exists": 409,
    "root-required": 409,
    "root-protected": 409,
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a request: a user of the auth state, or the holder of the admin token;
    ``wire`` is what a write carries into the log (module rules)."""

    name: str
    user: User | None  # None: the admin token
    root: bool
    wire: WirePrincipal


ADMIN = Principal("(admin token)", None, True, WirePrincipal(name="", via=VIA_ADMIN))
# The request's authenticated Principal (None: nobody), found once per request.
_WHO: web.RequestKey[Principal | None] = web.RequestKey("consensuskit.principal")
_WHAT = {READ: "read", WRITE: "write", READWRITE: "read and write", ADMINISTER: "manage auth"}

NO_CREDENTIALS = (
    "auth is enabled: send Authorization: Bearer <token> (POST /v1/auth/token) or a client certificate"
)
TOKEN_REVOKED = (
    "token revoked (its user was deleted or got a new password, or auth was re-enabled); "
    "get a new one from POST /v1/auth/token"
)


def _unauthenticated(message: str, code: str = "unauthenticated") -> ApiError:
    exc = ApiError(401, code, message, outcome=NOT_APPLIED)
    exc.headers["WWW-Authenticate"] = "Bearer"
    return exc


def _denied(message: str) -> ApiError:
    return ApiError(403, "permission-denied", message, outcome=NOT_APPLIED)


class AuthGate:
    """The checks ``NodeApi`` runs before serving a request (see the module rules)."""

    def __init__(self, api: NodeApi) -> None:
        self.api = api
        self._key: bytes | None = None
        self._sm: Any = None  # the node's state machine, found at first use

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> AuthState | None:
        # Asked on every request (the fast path too): the state machine object is the
        # node's for good (a snapshot restores into it), its auth part is not.
        sm = self._sm
        if sm is None:
            sm = self._sm = getattr(getattr(self.api.runtime, "node", None), "sm", None)
            if sm is None:
                return None
        return getattr(sm, "auth", None)  # None: this service keeps no users

    @property
    def enabled(self) -> bool:
        state = self.state
        return state is not None and state.enabled

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = token_key(self.api.config.secret)
        return self._key

    # ------------------------------------------------------------------ checks
    async def authorize(self, request: web.Request, need: str, key: str) -> None:
        """Raise unless the request's user may ``need`` (read/write/readwrite) ``key`` by
        this node's applied auth state.  A write's principal is remembered for ``carried``;
        a read asks again once served (module rules)."""
        state = self.state
        if state is None:
            return
        if not state.enabled:
            # The log may have auth on already: whoever the credentials name is carried,
            # and the node that applies the write decides.
            await self.principal(request, quiet=True)
            return
        principal = await self.principal(request)
        state = self.state  # principal() may have waited for newer state
        assert state is not None
        refused = state.check(principal.wire if principal is not None else None, need, key)
        if refused is None:
            return
        code = refused["error"]
        if code == PERMISSION_DENIED:
            assert principal is not None
            raise _denied(f"user {principal.name!r} may not {_WHAT[need]} {key!r}")
        if code == INVALID_TOKEN:
            raise _unauthenticated(TOKEN_REVOKED, INVALID_TOKEN)
        if principal is None:
            raise _unauthenticated(NO_CREDENTIALS)
        raise _unauthenticated(f"client certificate for {principal.name[:128]!r}, who is no user here")

    async def reads_own(self, request: web.Request, what: str, name: str) -> bool:
        """True when auth is on and the request's user reads its own record (``what``
        "user") or a role it holds ("role"; ``AuthState.reads_own``).  By this node's
        state now: a route asks again once the read was served."""
        state = self.state
        if state is None or not state.enabled:
            return False
        principal = await self.principal(request)
        state = self.state  # principal() may have waited for newer state
        if principal is None or principal.user is None or state is None:
            return False
        if state.check_spans(principal.wire, ()) is not None:
            return False  # a retired token or a deleted user: admin() says why
        return state.reads_own(principal.wire, what, name)

    def check_anonymous_read(self) -> None:
        """Raise what ``authorize`` raises for a request without credentials once auth is
        on: the fast path's reads (which carry none) ask it when answered, since the node
        may have applied an ``enable`` up to their read index after admitting them."""
        if self.enabled:
            raise _unauthenticated(NO_CREDENTIALS)

    async def administers(self, request: web.Request) -> None:
        """Raise unless the request may manage auth by this node's state now (after
        ``admin`` let it in and a read was served: a root user, or the admin token)."""
        state = self.state
        if state is None or not state.enabled:
            return
        principal = await self.principal(request)
        if principal is None:
            raise _unauthenticated("auth administration needs a root user (or the admin token)")
        refused = state.check(principal.wire, ADMINISTER, "")
        if refused is None:
            return
        if refused["error"] == INVALID_TOKEN:
            raise _unauthenticated(TOKEN_REVOKED, INVALID_TOKEN)
        if refused["error"] == PERMISSION_DENIED:
            raise _denied(f"user {principal.name!r} does not hold the root role")
        raise _unauthenticated(f"client certificate for {principal.name[:128]!r}, who is no user here")

    @staticmethod
    def carried(request: web.Request) -> WirePrincipal | None:
        """The principal a write from ``request`` carries into the log (None: nobody)."""
        principal = request.get(_WHO)
        return principal.wire if principal is not None else None

    async def endpoint(self, request: web.Request, access: str) -> None:
        """``/v1/status``, ``/metrics``: ``access`` is the config's "public" or "authenticated"."""
        if access == "public" or not self.enabled:
            return
        if await self.principal(request) is None:
            raise _unauthenticated("auth is enabled: this endpoint needs a user (or the admin token)")

    async def admin(self, request: web.Request) -> Principal | None:
        """Raise unless the request may manage auth."""
        token = self.api.config.admin_token
        given = _bearer(request)
        if token is not None and given is not None and _same(given, token):
            request[_WHO] = ADMIN
            return ADMIN
        if self.enabled:
            principal = await self.principal(request)
            if principal is None:
                raise _unauthenticated("auth administration needs a root user (or the admin token)")
            if not principal.root:
                raise _denied(f"user {principal.name!r} does not hold the root role")
            return principal
        if token is None:
            # Auth disabled here and no admin token: open, as etcd; a root user's
            # credentials are carried all the same, for a log where auth is on already.
            return await self.principal(request, quiet=True)
        if given is None:
            raise _unauthenticated("auth administration needs the admin token while auth is disabled")
        raise _denied("wrong admin token (while auth is disabled only the admin token manages auth)")

    async def principal(self, request: web.Request, *, quiet: bool = False) -> Principal | None:
        """The request's user (None: no credentials); raises 401 for bad ones (``quiet``:
        None instead).  Found once per request."""
        if _WHO in request:
            return request[_WHO]
        try:
            principal = await self._principal(request)
        except ApiError:
            if quiet:
                return None
            raise
        request[_WHO] = principal
        return principal

    async def _principal(self, request: web.Request) -> Principal | None:
        given = _bearer(request)
        if given is not None:
            token = self.api.config.admin_token
            if token is not None and _same(given, token):
                return ADMIN
            return await self.token_user(given)
        if request.headers.get("Authorization") is not None:
            raise _unauthenticated("only Authorization: Bearer <token> is understood")
        transport = request.transport
        name = certificate_user(transport.get_extra_info("peercert") if transport is not None else None)
        if name is None:
            return None
        state = self.state
        user = state.users.get(name) if state is not None else None
        if user is None:
            raise _unauthenticated(f"client certificate for {name[:128]!r}, who is no user here")
        assert state is not None
        wire = WirePrincipal(name=name, via=VIA_CERTIFICATE, rev=state.revision)
        return Principal(name, user, state.is_root(user), wire)

    async def token_user(self, token: str) -> Principal:
        """The user a bearer token names (ApiError 401 for a bad one, 503 when this node
        has not applied the auth revision it was issued at within the request timeout)."""
        try:
            claims = read_token(self.key, token, time.time())
        except TokenError as exc:
            raise _unauthenticated(exc.message, exc.code) from None
        state = self.state
        if state is None:
            raise _unauthenticated("this node keeps no users", "invalid-token")
        if state.revision < claims.rev:
            # Issued by a node further ahead: wait until this one applied as much.
            caught_up = await self.api.runtime.wait_until(
                lambda n: n.sm.auth.revision >= claims.rev, self.api.config.request_timeout
            )
            if not caught_up:
                raise ApiError(
                    503,
                    "timeout",
                    f"this node has not yet applied auth revision {claims.rev}; retry",
                    outcome=NOT_APPLIED,
                )
            state = self.state
            assert state is not None
        user = state.users.get(claims.user)
        if user is None or user.rev > claims.rev or claims.rev < state.enabled_rev:
            raise _unauthenticated(TOKEN_REVOKED, INVALID_TOKEN)
        wire = WirePrincipal(name=user.name, via=VIA_TOKEN, rev=claims.rev)
        return Principal(user.name, user, state.is_root(user), wire)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, given = header.partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8", "replace"))


# ---------------------------------------------------------------------- routes
class AuthRoutes:
    """``/v1/auth/...`` (docs/openapi.yaml)."""

    def __init__(self, api: NodeApi) -> None:
        self.api = api
        self.gate: AuthGate = api.auth

    def add_to(self, router: web.UrlDispatcher) -> None:
        r = router
        r.add_route("POST", "/v1/auth/token", self.token)
        r.add_route("GET", "/v1/auth/status", self.status)
        r.add_route("POST", "/v1/auth/enable", self.enable)
        r.add_route("POST", "/v1/auth/disable", self.disable)
        r.add_route("GET", "/v1/auth/users", self.users)
        r.add_route("POST", "/v1/auth/users", self.add_user)
        r.add_route("GET", "/v1/auth/users/{name}", self.user)
        r.add_route("DELETE", "/v1/auth/users/{name}", self.delete_user)
        r.add_route("PUT", "/v1/auth/users/{name}/password", self.set_password)
        r.add_route("PUT", "/v1/auth/users/{name}/roles/{role}", self.grant_role)
        r.add_route("DELETE", "/v1/auth/users/{name}/roles/{role}", self.revoke_role)
        r.add_route("GET", "/v1/auth/roles", self.roles)
        r.add_route("POST", "/v1/auth/roles", self.add_role)
        r.add_route("GET", "/v1/auth/roles/{name}", self.role)
        r.add_route("DELETE", "/v1/auth/roles/{name}", self.delete_role)
        r.add_route("POST", "/v1/auth/roles/{name}/permissions", self.grant_permission)
        r.add_route("DELETE", "/v1/auth/roles/{name}/permissions", self.revoke_permission)

    # ------------------------------------------------------------------ plumbing
    async def _change(self, request: web.Request, action: str, *args: Any) -> web.Response:
        op = Op(kind=AUTH, key=action, value=args)
        response = await self.api.submit(request, op, write=True)
        result = response.result
        if isinstance(result, dict) and "error" in result:
            code = str(result["error"])
            raise ApiError(
                _STATUS.get(code, 400), code, str(result.get("message", code)), outcome=NOT_APPLIED
            )
        return _ok({"revision": result["revision"], "index": response.index})

    async def _read(self, request: web.Request, what: str, arg: Any = None) -> Any:
        op = Op(kind=AUTH_READ, key=what, value=arg)
        response = await self.api.submit(request, op, consistency=LINEARIZABLE)
        result = response.result
        if isinstance(result, dict) and "error" in result:
            code = str(result["error"])
            raise ApiError(_STATUS.get(code, 400), code, str(result.get("message", code)))
        return result

    async def _own_or_admin_read(self, request: web.Request, what: str, name: str) -> Any:
        """A read of a user or role record: the user's own, or a role it holds, needs no
        root (``AuthGate.reads_own``); any other is an administrator's."""
        if not await self.gate.reads_own(request, what, name):
            await self.gate.admin(request)
            return await self._admin_read(request, what, name)
        result = await self._read(request, what, name)
        if not await self.gate.reads_own(request, what, name):  # judged again once served
            await self.gate.administers(request)
        return result

    async def _admin_read(self, request: web.Request, what: str, arg: Any = None) -> Any:
        """An administrator's read, judged again once served (the node then applied up to
        its read index: an ``enable`` committed before it counts)."""
        result = await self._read(request, what, arg)
        await self.gate.administers(request)
        return result

    @staticmethod
    def _name(value: Any, what: str) -> str:
        # Checked here, before the log: a value msgpack cannot encode (a lone surrogate
        # from JSON's \udcxx) would fail the log write and halt the node.
        if not valid_name(value):
            raise ApiError(
                400, "bad-request", f"bad {what} name: 1-128 of A-Z a-z 0-9 _ . @ + = - (spaces inside)"
            )
        return str(value)

    @staticmethod
    def _prefix(value: Any) -> str:
        if not isinstance(value, str) or len(value) > MAX_PREFIX:
            raise ApiError(
                400, "bad-request", f'"prefix" must be a string of at most {MAX_PREFIX} characters'
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, "bad-request", '"prefix" is not valid UTF-8') from None
        return value

    async def _hash(self, password: str) -> tuple[str, int, bytes, bytes]:
        # PBKDF2 takes tens of milliseconds by design: not on the event loop.
        return await asyncio.to_thread(hash_password, password, self.api.config.auth.password_iterations)

    async def _password_field(self, body: dict[str, Any]) -> Any:
        if "password" not in body or body["password"] is None:
            return None  # a user who signs in only with a client certificate
        problem = check_password(body["password"])
        if problem:
            raise ApiError(400, "bad-request", problem)
        return await self._hash(body["password"])

    # ------------------------------------------------------------------ tokens
    async def token(self, request: web.Request) -> web.Response:
        _only_params(request, ())
        body = await _json_object(request)
        name, password = body.get("user"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise ApiError(400, "bad-request", 'body needs "user" and "password" (strings)')
        # A linearizable read: this node (the leader) has applied every committed change.
        record = (
            await self._read_user_or_404(request, name) if valid_name(name) else {"error": "user-not-found"}
        )
        if not self.gate.enabled:
            raise ApiError(409, "auth-not-enabled", "auth is disabled: no token is needed (or issued)")
        stored = record.get("password") if record.get("error") is None else None
        # An unknown user (or one without a password) is checked against a dummy record of
        # the configured cost: the same answer after about the same time as a wrong password.
        dummy = ("pbkdf2-sha256", self.api.config.auth.password_iterations, b"\0" * 16, b"\0" * 32)
        ok = await asyncio.to_thread(verify_password, stored or dummy, password)
        if not ok or stored is None:
            raise _unauthenticated("wrong user name or password")
        ttl = self.api.config.auth.token_ttl
        expires = time.time() + ttl
        token = mint_token(self.gate.key, name, int(record["revision"]), expires)
        return _ok({"token": token, "user": name, "ttl": ttl, "expires_at": round(expires, 3)})

    async def _read_user_or_404(self, request: web.Request, name: str) -> Any:
        try:
            return await self._read(request, "user", name)
        except ApiError as exc:
            if exc.code in ("user-not-found", "bad-command"):
                return {"error": exc.code}
            raise

    async def status(self, request: web.Request) -> web.Response:
        result = await self._read(request, "status")
        return _ok({"enabled": result["enabled"], "revision": result["revision"]})

    async def enable(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        return await self._change(request, "enable")

    async def disable(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        return await self._change(request, "disable")

    # ------------------------------------------------------------------ users
    async def users(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        return _ok(await self._admin_read(request, "users"))

    async def user(self, request: web.Request) -> web.Response:
        name = self._name(request.match_info["name"], "user")
        result = await self._own_or_admin_read(request, "user", name)
        return _ok({k: result[k] for k in ("name", "roles", "has_password", "revision")})

    async def add_user(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        body = await _json_object(request)
        if not isinstance(body.get("name"), str):
            raise ApiError(
                400, "bad-request", 'body needs "name" (and "password", or null for certificate-only)'
            )
        name = self._name(body["name"], "user")
        return await self._change(request, "user-add", name, await self._password_field(body))

    async def delete_user(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        return await self._change(request, "user-delete", self._name(request.match_info["name"], "user"))

    async def set_password(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        body = await _json_object(request)
        if "password" not in body:
            raise ApiError(400, "bad-request", 'body needs "password" (a string, or null for none)')
        name = self._name(request.match_info["name"], "user")
        return await self._change(request, "user-password", name, await self._password_field(body))

    async def grant_role(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        info = request.match_info
        user, role = self._name(info["name"], "user"), self._name(info["role"], "role")
        return await self._change(request, "user-grant-role", user, role)

    async def revoke_role(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        info = request.match_info
        user, role = self._name(info["name"], "user"), self._name(info["role"], "role")
        return await self._change(request, "user-revoke-role", user, role)

    # ------------------------------------------------------------------ roles
    async def roles(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        return _ok(await self._admin_read(request, "roles"))

    async def role(self, request: web.Request) -> web.Response:
        name = self._name(request.match_info["name"], "role")
        return _ok(await self._own_or_admin_read(request, "role", name))

    async def add_role(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        body = await _json_object(request)
        if not isinstance(body.get("name"), str):
            raise ApiError(400, "bad-request", 'body needs "name"')
        return await self._change(request, "role-add", self._name(body["name"], "role"))

    async def delete_role(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        return await self._change(request, "role-delete", self._name(request.match_info["name"], "role"))

    async def grant_permission(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        body = await _json_object(request)
        prefix, permission = body.get("prefix"), body.get("permission")
        if not isinstance(prefix, str) or permission not in PERMISSIONS:
            raise ApiError(
                400,
                "bad-request",
                f'body needs "prefix" (a string, "" = every key) and "permission": {", ".join(PERMISSIONS)}',
            )
        role = self._name(request.match_info["name"], "role")
        return await self._change(request, "role-grant", role, self._prefix(prefix), permission)

    async def revoke_permission(self, request: web.Request) -> web.Response:
        await self.gate.admin(request)
        prefix = _only_params(request, ("prefix",)).get("prefix")
        if prefix is None:
            raise ApiError(400, "bad-request", "give ?prefix=P: the prefix whose permission to revoke")
        role = self._name(request.match_info["name"], "role")
        return await self._change(request, "role-revoke", role, self._prefix(prefix))
