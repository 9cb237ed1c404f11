"""Client credentials at the edge: the ``[auth]`` settings, password hashes, tokens, and
the user named by a client certificate.  (Who may do what lives in the replicated state,
``statemachines/auth.py``; the HTTP side of it in ``auth_api.py``.)

Rules this module owns:
  * passwords are hashed here, on the node that receives them, never in ``apply``:
    PBKDF2-HMAC-SHA256 with a random 16-byte salt and ``password_iterations`` rounds; the
    record ``("pbkdf2-sha256", iterations, salt, hash)`` is what the log carries, so a
    node verifies a password against whatever rounds it was hashed with;
  * a token is ``ck1.<payload>.<mac>`` (base64url): the payload names the user, the auth
    revision it was issued at and its expiry (Unix seconds); the MAC is HMAC-SHA256 under
    a key derived from the cluster secret, so every node of the cluster can check a token
    any node issued, without shared state.  A token is good until it expires, and dies
    earlier when its user is deleted or gets a new password, or auth is disabled and
    enabled again (the user's / the enable's revision is then newer than the token's).
    Role and permission changes do not kill tokens: permissions are looked up at every
    request, so they take effect at once.  Expiry uses the nodes' wall clocks;
  * with ``client_ca`` (and the HTTP API on TLS), a client certificate signed by that CA
    names the user by its subject's common name (as etcd's ``--client-cert-auth``);
    ``client_cert = "required"`` refuses TLS connections without one, ``"optional"`` lets
    them in to use tokens;
  * ``status`` / ``metrics`` say who may read ``/v1/status`` (and ``/v1/members``) and
    ``/metrics`` while auth is enabled: ``"public"`` (anyone) or ``"authenticated"`` (any
    user, or the admin token).  With auth disabled both are public.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEME = "pbkdf2-sha256"
SALT_BYTES = 16
DEFAULT_ITERATIONS = 200_000
MIN_ITERATIONS = 1000
MAX_PASSWORD = 1024  # characters
DEFAULT_TOKEN_TTL = 300.0  # seconds, as etcd's simple tokens
TOKEN_PREFIX = "ck1."
ACCESS = ("public", "authenticated")
CLIENT_CERT = ("required", "optional")
AUTH_KEYS = ("token_ttl", "password_iterations", "client_ca", "client_cert", "status", "metrics")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    token_ttl: float = DEFAULT_TOKEN_TTL
    password_iterations: int = DEFAULT_ITERATIONS
    client_ca: Path | None = None
    client_cert: str = "required"
    status: str = "authenticated"
    metrics: str = "public"


def parse_auth_table(table: Any) -> AuthConfig:
    """The ``[auth]`` table (paths already resolved) -> AuthConfig; ValueError naming the setting."""
    if table is None:
        return AuthConfig()
    if not isinstance(table, dict):
        raise ValueError(f"auth: expected a table, got {table!r}")
    unknown = sorted(set(table) - set(AUTH_KEYS))
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r} in auth; valid: {', '.join(AUTH_KEYS)}")
    ttl = table.get("token_ttl", DEFAULT_TOKEN_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= 7 * 86400:
        raise ValueError(f"auth.token_ttl: expected seconds in (0, 604800], got {ttl!r}")
    rounds = table.get("password_iterations", DEFAULT_ITERATIONS)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not MIN_ITERATIONS <= rounds <= 10**8:
        raise ValueError(f"auth.password_iterations: expected an integer >= {MIN_ITERATIONS}, got {rounds!r}")
    ca = table.get("client_ca")
    if ca is not None and (not isinstance(ca, str) or not Path(ca).is_file()):
        raise ValueError(f"auth.client_ca: {ca} not found")
    choices = {}
    for key, valid, default in (
        ("client_cert", CLIENT_CERT, "required"),
        ("status", ACCESS, "authenticated"),
        ("metrics", ACCESS, "public"),
    ):
        value = table.get(key, default)
        if value not in valid:
            raise ValueError(f"auth.{key}: {value!r} is not one of {', '.join(valid)}")
        choices[key] = value
    return AuthConfig(
        token_ttl=float(ttl),
        password_iterations=rounds,
        client_ca=Path(ca) if ca else None,
        **choices,
    )


# ---------------------------------------------------------------------- passwords
def check_password(password: Any) -> str | None:
    """Why ``password`` is not acceptable (None: it is)."""
    if not isinstance(password, str) or not password:
        return "password must be a non-empty string"
    if len(password) > MAX_PASSWORD:
        return f"password longer than {MAX_PASSWORD} characters"
    return None


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS) -> tuple[str, int, bytes, bytes]:
    """The record the log stores (slow on purpose: call it off the event loop)."""
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8", "surrogatepass"), salt, iterations)
    return (SCHEME, iterations, salt, digest)


def verify_password(record: Any, password: str) -> bool:
    """Constant-time check of ``password`` against a stored record; False for no record."""
    if not isinstance(record, (tuple, list)) or len(record) != 4 or record[0] != SCHEME:
        return False
    _, iterations, salt, expected = record
    if not isinstance(iterations, int) or iterations < 1 or not isinstance(salt, bytes):
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8", "surrogatepass"), salt, iterations)
    return hmac.compare_digest(digest, expected)


# ---------------------------------------------------------------------- tokens
class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user: str
    rev: int
    expires: float


def token_key(secret: bytes) -> bytes:
    """The MAC key: derived from the cluster secret, so a token is no peer credential."""
    return hmac.new(secret, b"consensuskit client token v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_token(key: bytes, user: str, rev: int, expires: float) -> str:
    payload = json.dumps({"u": user, "r": rev, "e": round(expires, 3)}, separators=(",", ":"))
    body = _b64(payload.encode("utf-8"))
    mac = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    return f"{TOKEN_PREFIX}{body}.{_b64(mac)}"


def read_token(key: bytes, token: str, now: float) -> TokenClaims:
    """The claims of a token this cluster issued; TokenError ``invalid-token`` or
    ``token-expired`` otherwise."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 4096:
        raise TokenError("invalid-token", "not a token of this cluster")
    body, _, mac_text = token[len(TOKEN_PREFIX) :].partition(".")
    try:
        mac = _unb64(mac_text)
        expected = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise TokenError("invalid-token", "malformed token") from None
    if not hmac.compare_digest(mac, expected):
        raise TokenError("invalid-token", "token signature does not match (not issued by this cluster)")
    try:
        claims = json.loads(_unb64(body))
        user, rev, expires = claims["u"], claims["r"], claims["e"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise TokenError("invalid-token", "malformed token") from None
    if not isinstance(user, str) or not isinstance(rev, int) or not isinstance(expires, (int, float)):
        raise TokenError("invalid-token", "malformed token")
    if expires <= now:
        raise TokenError("token-expired", "token expired: get a new one from POST /v1/auth/token")
    return TokenClaims(user, rev, float(expires))


# ---------------------------------------------------------------------- certificates
def require_client_certs(ctx: ssl.SSLContext, config: AuthConfig) -> None:
    """Make the client API's TLS context verify client certificates against ``client_ca``."""
    if config.client_ca is None:
        return
    ctx.load_verify_locations(config.client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED if config.client_cert == "required" else ssl.CERT_OPTIONAL


def certificate_user(peercert: Any) -> str | None:
    """The common name of a verified peer certificate (``SSLSocket.getpeercert()`` form)."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName" and isinstance(value, str) and value:
                return value
    return None
