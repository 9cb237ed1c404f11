"""Users, roles and permissions on key prefixes, replicated with the key-value state (etcd's auth).

The key-value state machine (``kv.py``) holds one ``AuthState`` and hands it the ``auth``
commands (``Op(kind="auth", key=ACTION, value=ARGS)``) and the ``auth-read`` reads
(``Op(kind="auth-read", key=WHAT, value=ARG)``), so every replica applies the same changes
in log order and agrees on who may do what.

Rules this module owns:
  * ``apply`` is cheap and deterministic: a password arrives already hashed (salted
    PBKDF2, computed at the HTTP edge, ``server/auth.py``); this module only stores the
    hash record it is given and never hashes, draws randomness or reads a clock;
  * no command can raise: a malformed one (wrong arity or types, a bad name) is answered
    ``{"error": "bad-command", ...}`` and changes nothing; every refusal is a result
    ``{"error": CODE, "message": TEXT}`` and changes nothing;
  * ``revision`` counts the successful changes (it starts at 0 and only grows); a change
    that changes nothing (granting a role the user holds) keeps it;
  * a user's ``rev`` is the revision at which it was created or its password last set: a
    token issued at an older revision no longer names this user (server/auth.py);
    ``enabled_rev`` is the revision of the last ``enable``: tokens from before it are dead;
  * the role ``root`` always exists, grants every permission (every key, and auth
    administration) and cannot be deleted or given permissions.  ``enable`` needs a user
    ``root`` holding the role ``root`` (as etcd); while enabled, that user can neither be
    deleted nor lose the role, so nobody locks the cluster out by accident;
  * a permission is ``read``, ``write`` or ``readwrite`` on a key prefix (``""``: every
    key), or on a key range as etcd grants them (``role-grant-range``: ``(key, end)``,
    the keys from ``key`` up to ``end`` excluded; ``end`` "" is the one key ``key``,
    "\0" every key from ``key`` on).  A role holds at most one per prefix or range
    (granting again replaces it).  A request reaches a set of keys (one key, a listing's
    prefix, an etcd range): it may ``need`` read (write) when the keys its user's read
    (write) permissions reach, taken together, hold all of them (etcd's interval
    check).  Keys compare as strings: the etcd service maps its byte keys to strings
    one byte per character (``latin-1``), so the order is etcd's byte order;
  * ``judge`` decides, where a command is applied, whether its principal (who the edge
    that admitted it authenticated, ``core.client.Principal``) may run it against this
    state, as etcd's authApplierV3 does: while auth is enabled a write needs a principal
    (else ``unauthenticated``), a user who still exists (else ``unauthenticated`` for a
    certificate, ``invalid-token`` for a token) whose token is not older than the user's
    ``rev`` nor than ``enabled_rev`` (else ``invalid-token``), and the permission the op
    needs on its key, or the root role for auth administration (else
    ``permission-denied``).  The admin token passes, and so does a command of the
    release that judged only at the edge (``EDGE_JUDGED``: replaying it must give what
    it gave).  Reads are judged at the edge, once the node applied up to their read index;
  * snapshots list users and roles in name order; an absent or ``None`` snapshot part is
    the empty state (snapshots written before auth existed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from consensuskit.core.client import VIA_ADMIN, VIA_EDGE, VIA_TOKEN, Op, Principal, ServiceOp
from consensuskit.statemachines.sessions import DENIED, NOBODY, TOKEN_RETIRED

AUTH = "auth"  # the write kind: key = action, value = its arguments
AUTH_READ = "auth-read"  # the read kind: key = what, value = its argument
AUTH_KINDS = (AUTH, AUTH_READ)

ROOT = "root"  # the root role, and the user that must hold it before auth is enabled
READ, WRITE, READWRITE = "read", "write", "readwrite"
PERMISSIONS = (READ, WRITE, READWRITE)
ADMINISTER = "administer"  # what auth administration needs (``check``): the root role
MAX_NAME = 128
MAX_PREFIX = 4096
# Letters, digits and _ . @ + = - ; spaces inside (a certificate's CN may have them).
# No ':' (the CLI's --user NAME:PASSWORD) and no '/' (names are URL path segments).
NAME = re.compile(r"[A-Za-z0-9_.@+=-](?:[A-Za-z0-9 _.@+=-]{0,126}[A-Za-z0-9_.@+=-])?")

ACTIONS = (
    "user-add",  # (name, password record or None)
    "user-delete",  # (name,)
    "user-password",  # (name, password record or None)
    "user-grant-role",  # (name, role)
    "user-revoke-role",  # (name, role)
    "role-add",  # (role,)
    "role-delete",  # (role,)
    "role-grant",  # (role, prefix, permission)
    "role-revoke",  # (role, prefix)
    "role-grant-range",  # (role, key, end, permission): etcd's ranges (module rules)
    "role-revoke-range",  # (role, key, end)
    "enable",  # ()
    "disable",  # ()
)
READS = ("status", "user", "users", "role", "roles")

SNAPSHOT_VERSION = 1
Grant = str | tuple[str, str]  # a prefix, or an etcd range (key, end): module rules
# A set of keys as a half-open interval [start, end); end None: no end.
Span = tuple[str, "str | None"]
TOP = chr(0x10FFFF)  # the greatest character: a prefix ending in it has no next prefix


def valid_name(name: Any) -> bool:
    return type(name) is str and NAME.fullmatch(name) is not None


def valid_password_record(record: Any) -> bool:
    """``(scheme, iterations, salt, hash)`` as ``server/auth.py`` makes it, or None (no password:
    the user signs in only with a client certificate)."""
    if record is None:
        return True
    return (
        isinstance(record, (tuple, list))
        and len(record) == 4
        and type(record[0]) is str
        and type(record[1]) is int
        and isinstance(record[2], bytes)
        and isinstance(record[3], bytes)
    )


def _freeze(record: Any) -> Any:
    return None if record is None else tuple(record)


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """Invariant: ``roles`` sorted, without duplicates, each an existing role."""

    name: str
    password: tuple[Any, ...] | None  # (scheme, iterations, salt, hash) or None
    roles: tuple[str, ...] = ()
    rev: int = 0

    def public(self) -> dict[str, Any]:
        """What an administrator may see (never the hash)."""
        return {"name": self.name, "roles": list(self.roles), "has_password": self.password is not None}


class AuthError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _refuse(code: str, message: str) -> dict[str, Any]:
    return {"error": code, "message": message}


class AuthState:
    """The auth part of the replicated state (see the module rules)."""

    __slots__ = ("enabled", "enabled_rev", "revision", "roles", "users")

    def __init__(self) -> None:
        self.enabled = False
        self.revision = 0
        self.enabled_rev = 0
        self.users: dict[str, User] = {}
        # role -> {prefix or (key, end): permission}; the root role is implicit, never stored
        self.roles: dict[str, dict[Grant, str]] = {}

    def __bool__(self) -> bool:
        """False for the state nobody touched (then snapshots carry no auth part)."""
        return bool(self.revision or self.users or self.roles or self.enabled)

    # ------------------------------------------------------------------ commands
    def execute(self, op: Op | ServiceOp) -> Any:
        if op.kind == AUTH_READ:
            return self.read(op.key, op.value)
        action, args = op.key, op.value
        if action not in ACTIONS:
            return _refuse(
                "bad-command", f"unknown auth action {str(action)[:40]!r}; valid: {', '.join(ACTIONS)}"
            )
        if not isinstance(args, (tuple, list)):
            return _refuse("bad-command", f"{action}: arguments must be a list")
        try:
            changed = getattr(self, "_" + action.replace("-", "_"))(*args)
        except TypeError:
            return _refuse("bad-command", f"{action}: wrong number of arguments")
        except AuthError as exc:
            return _refuse(exc.code, exc.message)
        if changed:
            self.revision += 1
        return {"revision": self.revision}

    def _user(self, name: Any) -> User:
        if not valid_name(name):
            raise AuthError("bad-command", "a user name is 1-128 of A-Z a-z 0-9 _ . @ + = - (spaces inside)")
        user = self.users.get(name)
        if user is None:
            raise AuthError("user-not-found", f"no user {name!r}")
        return user

    def _role_name(self, role: Any) -> str:
        if not valid_name(role):
            raise AuthError("bad-command", "a role name is 1-128 of A-Z a-z 0-9 _ . @ + = - (spaces inside)")
        if role != ROOT and role not in self.roles:
            raise AuthError("role-not-found", f"no role {role!r}")
        return role

    def _user_add(self, name: Any, password: Any) -> bool:
        if not valid_name(name):
            raise AuthError("bad-command", "a user name is 1-128 of A-Z a-z 0-9 _ . @ + = - (spaces inside)")
        if not valid_password_record(password):
            raise AuthError("bad-command", "user-add: malformed password record")
        if name in self.users:
            raise AuthError("user-exists", f"user {name!r} already exists")
        self.users[name] = User(name=name, password=_freeze(password), rev=self.revision + 1)
        return True

    def _user_delete(self, name: Any) -> bool:
        user = self._user(name)
        if self.enabled and user.name == ROOT:
            raise AuthError(
                "root-protected", "auth is enabled: the root user cannot be deleted (disable auth first)"
            )
        del self.users[user.name]
        return True

    def _user_password(self, name: Any, password: Any) -> bool:
        user = self._user(name)
        if not valid_password_record(password):
            raise AuthError("bad-command", "user-password: malformed password record")
        # A new password (or none) retires the tokens issued before it.
        rev = self.revision + 1
        self.users[user.name] = User(name=user.name, password=_freeze(password), roles=user.roles, rev=rev)
        return True

    def _user_grant_role(self, name: Any, role: Any) -> bool:
        user = self._user(name)
        role = self._role_name(role)
        if role in user.roles:
            return False
        roles = tuple(sorted((*user.roles, role)))
        self.users[user.name] = User(name=user.name, password=user.password, roles=roles, rev=user.rev)
        return True

    def _user_revoke_role(self, name: Any, role: Any) -> bool:
        user = self._user(name)
        if role not in user.roles:
            raise AuthError(
                "role-not-granted", f"user {user.name!r} does not hold role {str(role)[:MAX_NAME]!r}"
            )
        if self.enabled and user.name == ROOT and role == ROOT:
            raise AuthError("root-protected", "auth is enabled: the root user keeps the root role")
        roles = tuple(r for r in user.roles if r != role)
        self.users[user.name] = User(name=user.name, password=user.password, roles=roles, rev=user.rev)
        return True

    def _role_add(self, role: Any) -> bool:
        if not valid_name(role):
            raise AuthError("bad-command", "a role name is 1-128 of A-Z a-z 0-9 _ . @ + = - (spaces inside)")
        if role == ROOT or role in self.roles:
            raise AuthError("role-exists", f"role {role!r} already exists")
        self.roles[role] = {}
        return True

    def _role_delete(self, role: Any) -> bool:
        role = self._role_name(role)
        if role == ROOT:
            raise AuthError("root-protected", "the root role is built in and cannot be deleted")
        del self.roles[role]
        for name, user in sorted(self.users.items()):  # etcd: the role leaves every user too
            if role in user.roles:
                roles = tuple(r for r in user.roles if r != role)
                self.users[name] = User(name=name, password=user.password, roles=roles, rev=user.rev)
        return True

    def _role_grant(self, role: Any, prefix: Any, permission: Any) -> bool:
        role = self._role_name(role)
        if role == ROOT:
            raise AuthError("root-protected", "the root role already has every permission")
        if type(prefix) is not str or len(prefix) > MAX_PREFIX:
            raise AuthError("bad-command", f"a prefix is a string of at most {MAX_PREFIX} characters")
        if permission not in PERMISSIONS:
            raise AuthError("bad-command", f"permission must be one of {', '.join(PERMISSIONS)}")
        perms = self.roles[role]
        if perms.get(prefix) == permission:
            return False
        perms[prefix] = permission
        return True

    def _role_revoke(self, role: Any, prefix: Any) -> bool:
        role = self._role_name(role)
        perms = self.roles.get(role, {})
        if type(prefix) is not str or prefix not in perms:
            raise AuthError(
                "permission-not-granted", f"role {role!r} has no permission on prefix {str(prefix)[:100]!r}"
            )
        del perms[prefix]
        return True

    def _role_grant_range(self, role: Any, key: Any, end: Any, permission: Any) -> bool:
        role = self._role_name(role)
        if role == ROOT:
            raise AuthError("root-protected", "the root role already has every permission")
        for part in (key, end):
            if type(part) is not str or len(part) > MAX_PREFIX:
                raise AuthError("bad-command", f"a range bound is a string of at most {MAX_PREFIX} chars")
        if permission not in PERMISSIONS:
            raise AuthError("bad-command", f"permission must be one of {', '.join(PERMISSIONS)}")
        perms = self.roles[role]
        if perms.get((key, end)) == permission:
            return False
        perms[(key, end)] = permission
        return True

    def _role_revoke_range(self, role: Any, key: Any, end: Any) -> bool:
        role = self._role_name(role)
        perms = self.roles.get(role, {})
        if type(key) is not str or type(end) is not str or (key, end) not in perms:
            raise AuthError(
                "permission-not-granted",
                f"role {role!r} has no permission on range {str(key)[:100]!r}..{str(end)[:100]!r}",
            )
        del perms[(key, end)]
        return True

    def _enable(self) -> bool:
        if self.enabled:
            return False
        root = self.users.get(ROOT)
        if root is None or ROOT not in root.roles:
            raise AuthError(
                "root-required",
                "enabling auth needs a user 'root' holding the role 'root' "
                "(user add root, then user grant-role root root)",
            )
        self.enabled = True
        self.enabled_rev = self.revision + 1
        return True

    def _disable(self) -> bool:
        if not self.enabled:
            return False
        self.enabled = False
        return True

    # ------------------------------------------------------------------ reads
    def read(self, what: Any, arg: Any = None) -> Any:
        """``auth-read`` results: plain msgpack-able values.  ``user`` includes the password
        record (the token route verifies it on the node); the HTTP layer strips it."""
        if what == "status":
            return {"enabled": self.enabled, "revision": self.revision}
        if what == "users":
            return {"users": [u.public() for _, u in sorted(self.users.items())], "revision": self.revision}
        if what == "roles":
            return {"roles": [self.role_view(r) for r in self.role_names()], "revision": self.revision}
        if what == "user":
            user = self.users.get(arg) if type(arg) is str else None
            if user is None:
                return _refuse("user-not-found", f"no user {str(arg)[:MAX_NAME]!r}")
            return {
                **user.public(),
                "password": user.password,
                "rev": user.rev,
                "enabled": self.enabled,
                "revision": self.revision,
            }
        if what == "role":
            if type(arg) is not str or (arg != ROOT and arg not in self.roles):
                return _refuse("role-not-found", f"no role {str(arg)[:MAX_NAME]!r}")
            return {**self.role_view(arg), "revision": self.revision}
        return _refuse("bad-command", f"unknown auth read {str(what)[:40]!r}; valid: {', '.join(READS)}")

    def role_names(self) -> list[str]:
        return sorted({ROOT, *self.roles})

    def role_view(self, role: str) -> dict[str, Any]:
        if role == ROOT:
            return {"name": ROOT, "permissions": [{"prefix": "", "permission": READWRITE}], "builtin": True}
        perms = self.roles.get(role, {})
        return {
            "name": role,
            "permissions": [_grant_view(g, perms[g]) for g in sorted(perms, key=_grant_order)],
            "builtin": False,
        }

    # ------------------------------------------------------------------ checks (apply)
    def judge(self, principal: Principal | None, op: Op) -> dict[str, str] | None:
        """None when ``principal`` may run the write ``op`` now, else the refusal (a
        ``sessions`` refusal: not applied, not remembered).  See the module rules."""
        if not self.enabled:
            return None
        if op.kind == AUTH:
            need = ADMINISTER
        elif op.kind == "cas":
            need = READWRITE
        else:
            need = READ if op.is_read() else WRITE
        return self.check(principal, need, op.key)

    def check(self, principal: Principal | None, need: str, key: str) -> dict[str, str] | None:
        """``judge`` for ``need`` (read, write, readwrite, or ``ADMINISTER``) on ``key``;
        the HTTP edge asks it too (its early answer, and reads after their read index)."""
        return self.check_spans(principal, ((need, prefix_span(key)),))

    def check_spans(
        self, principal: Principal | None, needs: Iterable[tuple[str, Span]]
    ) -> dict[str, str] | None:
        """None when ``principal`` may do every ``(need, keys)`` of ``needs`` (``need``
        read, write, readwrite on those keys, or ``ADMINISTER``; no needs at all: any
        user may), else the refusal."""
        if not self.enabled:
            return None
        if principal is None:
            return NOBODY
        via = principal.via
        if via in (VIA_ADMIN, VIA_EDGE):
            return None
        user = self.users.get(principal.name)
        if via == VIA_TOKEN:
            if user is None or user.rev > principal.rev or principal.rev < self.enabled_rev:
                return TOKEN_RETIRED
        elif user is None:
            return NOBODY
        assert user is not None
        if ROOT in user.roles:
            return None
        for need, span in needs:
            if need == ADMINISTER:
                return DENIED  # auth administration needs the root role
            if not self.allowed_span(user, need, span):
                return DENIED
        return None

    def reads_own(self, principal: Principal | None, what: Any, name: Any) -> bool:
        """``principal`` reads its own user record (``what`` "user") or a role it holds
        ("role"): any user may, as in etcd (its UserGet and RoleGet).  Whether the
        principal is still good is ``check_spans``'s to say."""
        user = self.users.get(principal.name) if principal is not None else None
        if user is None:
            return False
        return name == user.name if what == "user" else what == "role" and name in user.roles

    # ------------------------------------------------------------------ checks (the HTTP edge)
    def is_root(self, user: User) -> bool:
        return ROOT in user.roles

    def allowed(self, user: User, need: str, key: str) -> bool:
        """May ``user`` ``need`` (read/write/readwrite) ``key``?  For a listing, ``key`` is its
        prefix P: the permissions must reach every key the listing may return."""
        return self.allowed_span(user, need, prefix_span(key))

    def allowed_span(self, user: User, need: str, span: Span) -> bool:
        """May ``user`` ``need`` every key of ``span`` (module rules: the union of the
        user's permissions of that kind must hold it)."""
        if ROOT in user.roles:
            return True
        readable: list[Span] = []
        writable: list[Span] = []
        for role in user.roles:
            for grant, permission in self.roles.get(role, {}).items():
                reach = grant_span(grant)
                if permission in (READ, READWRITE):
                    readable.append(reach)
                if permission in (WRITE, READWRITE):
                    writable.append(reach)
        if need in (READ, READWRITE) and not covers(readable, span):
            return False
        return not (need in (WRITE, READWRITE) and not covers(writable, span))

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "enabled": self.enabled,
            "revision": self.revision,
            "enabled_rev": self.enabled_rev,
            "users": tuple((u.name, u.password, u.roles, u.rev) for _, u in sorted(self.users.items())),
            "roles": tuple(
                (role, tuple((g, perms[g]) for g in sorted(perms, key=_grant_order)))
                for role, perms in sorted(self.roles.items())
            ),
        }

    @classmethod
    def restored(cls, data: Any) -> AuthState:
        """The state a snapshot part describes (None: the empty state); ValueError if malformed."""
        state = cls()
        if data is None:
            return state
        if not isinstance(data, dict) or data.get("v") != SNAPSHOT_VERSION:
            raise ValueError("auth part: expected a map with v = 1")
        try:
            state.enabled = bool(data["enabled"])
            state.revision = int(data["revision"])
            state.enabled_rev = int(data["enabled_rev"])
            for name, password, roles, rev in data["users"]:
                if not valid_name(name) or not valid_password_record(password):
                    raise ValueError(f"bad user record {str(name)[:40]!r}")
                state.users[name] = User(
                    name=name, password=_freeze(password), roles=tuple(roles), rev=int(rev)
                )
            for role, perms in data["roles"]:
                state.roles[role] = {_grant_of(g): perm for g, perm in perms}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"auth part: {exc!r}") from exc
        return state


# ---------------------------------------------------------------------- key sets
def next_prefix(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix`` (None: none)."""
    while prefix and prefix[-1] == TOP:
        prefix = prefix[:-1]
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None


def prefix_span(prefix: str) -> Span:
    """The keys starting with ``prefix``."""
    return (prefix, next_prefix(prefix))


def key_span(key: str) -> Span:
    """The one key ``key``."""
    return (key, key + "\0")


def range_span(key: str, end: str) -> Span:
    """An etcd range: ``end`` "" the key alone, "\0" every key from ``key`` on."""
    if end == "":
        return key_span(key)
    return (key, None if end == "\0" else end)


def grant_span(grant: Grant) -> Span:
    return prefix_span(grant) if isinstance(grant, str) else range_span(*grant)


def covers(spans: list[Span], wanted: Span) -> bool:
    """Do ``spans`` together hold every key of ``wanted``?"""
    start, end = wanted
    if end is not None and end <= start:
        return True  # an empty range
    reached = start  # every key below ``reached`` (from ``start``) is held
    for lo, hi in sorted(spans, key=lambda s: s[0]):
        if lo > reached:
            break
        if hi is None:
            return True
        if hi > reached:
            reached = hi
            if end is not None and reached >= end:
                return True
    return False


def _grant_order(grant: Grant) -> tuple[str, str, int]:
    return (grant, "", 0) if isinstance(grant, str) else (grant[0], grant[1], 1)


def _grant_of(stored: Any) -> Grant:
    if isinstance(stored, str):
        return stored
    if isinstance(stored, (tuple, list)) and len(stored) == 2 and all(type(p) is str for p in stored):
        return (stored[0], stored[1])
    raise ValueError(f"bad permission key {str(stored)[:60]!r}")


def _grant_view(grant: Grant, permission: str) -> dict[str, str]:
    if isinstance(grant, str):
        return {"prefix": grant, "permission": permission}
    return {"key": grant[0], "range_end": grant[1], "permission": permission}
