"""Settings of one node process: a TOML file, the same settings as flags, or both.

Rules this module owns:
  * every setting has one name, used in the file and (with ``-`` for ``_``) as a flag;
    a flag overrides the file; an unknown name is an error naming the valid ones;
  * relative paths in a file are relative to the file's directory, flags to the cwd;
  * every problem is one ``ConfigError`` line naming the setting (the CLI exits 2);
  * secrets are read here, once: the cluster secret file must exist and not be empty.

File layout (see docs/server.md)::

    id = "n1"
    peer_address = "127.0.0.1:7001"      # where peers connect to us
    client_address = "127.0.0.1:8001"    # HTTP API
    data_dir = "data/n1"
    secret_file = "secret"
    [peers.n2]
    peer_address = "127.0.0.1:7002"
    client_url = "http://127.0.0.1:8002"
    [options]                            # protocol options, e.g. election_timeout = 0.3
"""

from __future__ import annotations

import re
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from consensuskit.catalog import default_registry, service_for
from consensuskit.core.registry import Registry
from consensuskit.server.auth import AuthConfig, parse_auth_table
from consensuskit.server.conn_guard import ConnectionLimits
from consensuskit.server.framing import PEER_MAX_MESSAGE_BYTES
from consensuskit.server.peer_tls import PeerIdentity, certificate_fingerprint
from consensuskit.statemachines.levels import BASE_LEVEL, RELEASE_LEVEL, valid_level

Address = tuple[str, int]

DEFAULT_MAX_VALUE_BYTES = 1 << 20
DEFAULT_MAX_KEY_BYTES = 4096
# One command carries at most two values and two keys (a compare-and-set's new and
# expected value) plus its request's other fields; it must fit in one peer message, or
# it could never replicate and every write after it would wait behind it for good.
COMMAND_OVERHEAD_BYTES = 1 << 20
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LOG_LEVELS = ("debug", "info", "warning", "error")
# A sync batch up to this size (and without a snapshot) is fsynced in the loop thread:
# a light load, with nothing to overlap the fsync with (docs/server.md, the runtime).
DEFAULT_INLINE_SYNC_BYTES = 4096
# Client sessions (statemachines/sessions.py, docs/server.md "Client sessions"): an idle
# hour is far beyond any client's retry deadline; 100k sessions cost about 50-70 MB.
DEFAULT_SESSION_TTL = 3600.0
DEFAULT_MAX_SESSIONS = 100_000
DEFAULT_EVENTS_RING = 10_000  # events a node keeps for GET /v1/events (server/events.py)

# Who a node is, where it listens and keeps its data, and what it runs.
NODE_IDENTITY = (
    "id",
    "cluster_id",
    "peer_address",
    "client_address",
    "client_url",
    "data_dir",
    "protocol",
    "service",
    "members",
    "secret_file",
    "admin_token_file",
)
TOP_LEVEL = (
    *NODE_IDENTITY,
    "keys_file",
    "max_value_bytes",
    "max_key_bytes",
    "fsync",
    "inline_sync_bytes",
    "request_timeout",
    "header_timeout",
    "body_timeout",
    "idle_timeout",
    "max_connections",
    "max_buffered_bytes",
    "session_ttl",
    "max_sessions",
    "cluster_level",
    "enable_fault_injection",
    "events_ring",
    "events_sample",
    "log_level",
    "peers",
    "tls",
    "options",
    "auth",
    "listen",
)
PEER_KEYS = ("peer_address", "client_url")
TLS_KEYS = ("cert", "key", "ca", "pinned", "client_api")


class ConfigError(ValueError):
    """A bad setting; ``str()`` is one line naming it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerInfo:
    peer_address: Address
    client_url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """Invariant: peer TLS has a trust anchor, ``ca`` or ``pinned`` (``_tls`` checks it)."""

    cert: Path
    key: Path
    ca: Path | None = None
    pinned: tuple[Path, ...] = ()  # peers' certificate files, trusted exactly (peer_tls.py)
    client_api: bool = False  # also serve the HTTP API over TLS

    def server_context(self, *, verify_clients: bool = True) -> ssl.SSLContext:
        """For the peer listener (dialers must show a certificate signed by ``ca`` or
        pinned) or, with ``verify_clients=False``, for the HTTP API."""
        if not verify_clients:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cert, self.key)
            return ctx
        # Not create_default_context: with no cafile it also trusts the system store.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        self._load_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """For dialing peers: the acceptor's certificate is verified (CA or pinned)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # only our trust anchors, no system store
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # Peers are named by address, not host name: the certificate check says "one of
        # the cluster's", the channel-bound HMAC handshake says which node.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        self._load_trust(ctx)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def _load_trust(self, ctx: ssl.SSLContext) -> None:
        if self.ca is not None:
            ctx.load_verify_locations(self.ca)
        for path in self.pinned:
            ctx.load_verify_locations(path)

    def identity(self) -> PeerIdentity:
        """This node's certificate fingerprint and the pins, for the transport."""
        pins = frozenset(certificate_fingerprint(p) for p in self.pinned) if self.pinned else None
        return PeerIdentity(fingerprint=certificate_fingerprint(self.cert), pins=pins)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    node_id: str
    peer_address: Address
    client_address: Address
    client_url: str
    data_dir: Path
    secret: bytes = field(repr=False)
    peers: dict[str, PeerInfo] = field(default_factory=dict)  # every other node we may talk to
    members: tuple[str, ...] = ()  # initial voters (sorted)
    protocol: str = "raft"
    service: str | None = None  # the client API (core/service.py); None: the protocol's default
    options: dict[str, Any] = field(default_factory=dict)
    admin_token: str | None = field(default=None, repr=False)
    tls: TLSConfig | None = None
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_key_bytes: int = DEFAULT_MAX_KEY_BYTES
    fsync: bool = True
    inline_sync_bytes: int = DEFAULT_INLINE_SYNC_BYTES
    request_timeout: float = 5.0
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)  # client connections
    session_ttl: float = DEFAULT_SESSION_TTL  # seconds; 0: sessions never expire (no clock commands)
    max_sessions: int = DEFAULT_MAX_SESSIONS
    # The highest cluster level this node agrees to (statemachines/levels.py): lower, it
    # keeps the cluster at an earlier release's rules (server/cluster_level.py).
    cluster_level: int = RELEASE_LEVEL
    enable_fault_injection: bool = False
    # The event feed (server/events.py, ``GET /v1/events``): events kept per node (0: no
    # feed), and one message in ``events_sample`` streamed while someone listens.
    events_ring: int = DEFAULT_EVENTS_RING
    events_sample: int = 1
    log_level: str = "info"
    auth: AuthConfig = field(default_factory=AuthConfig)  # [auth]: client auth (server/auth.py)
    # Checked against the data directory's identity (server/identity.py); None: only the
    # node id is checked.
    cluster_id: str | None = None
    # Flags only, never file settings (identity.py says why): what an empty data
    # directory means -- the first start of a new cluster, or a lost disk.
    bootstrap: bool = False
    rejoin: bool = False
    # [listen]: name -> address of the service's extra listeners (core/service.py ``ports``).
    listen: dict[str, Address] = field(default_factory=dict)
    # The cluster's public keys (server/node_keys.py); None: the node offers its protocol
    # no key pair (core/env.py ``node_key``, ``public_keys``).
    keys_file: Path | None = None

    def client_urls(self) -> dict[str, str]:
        urls = {peer: info.client_url for peer, info in self.peers.items()}
        urls[self.node_id] = self.client_url
        return dict(sorted(urls.items()))


def parse_address(text: Any, setting: str) -> Address:
    """``HOST:PORT`` or ``[V6]:PORT``; port 0 asks the OS for a free one."""
    if not isinstance(text, str):
        raise ConfigError(f"{setting}: expected a string HOST:PORT, got {text!r}")
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"{setting}: bad address {text!r}; expected HOST:PORT, e.g. 127.0.0.1:7001")
    return host, int(port_text)


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_peer_flag(text: str) -> tuple[str, dict[str, str]]:
    """``ID=HOST:PORT,URL`` (the ``--peer`` flag) -> (id, peer table)."""
    node_id, sep, rest = text.partition("=")
    address, comma, url = rest.partition(",")
    if not sep or not comma or not node_id or not url:
        raise ConfigError(f"--peer: expected ID=HOST:PORT,CLIENT_URL, got {text!r}")
    return node_id, {"peer_address": address, "client_url": url}


def load_config(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    registry: Registry | None = None,
) -> ServerConfig:
    """Read ``path`` (TOML), apply ``overrides`` (flag values; None = not given), validate."""
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        _check_keys(raw, TOP_LEVEL, str(path))
        base = path.resolve().parent
        raw = _resolve_paths(raw, base)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in TOP_LEVEL:
            raise ConfigError(f"unknown setting {key!r}; valid: {', '.join(TOP_LEVEL)}")
        if key in ("peers", "options", "tls", "auth"):
            merged = dict(raw.get(key) or {})
            merged.update(value)
            raw[key] = merged
        else:
            raw[key] = value
    return _build(raw, registry or default_registry())


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(raw)
    for key in ("data_dir", "secret_file", "admin_token_file", "keys_file"):
        if isinstance(out.get(key), str):
            out[key] = str(base / out[key])
    tls = out.get("tls")
    if isinstance(tls, dict):
        tls = dict(tls)
        for key in ("cert", "key", "ca"):
            if isinstance(tls.get(key), str):
                tls[key] = str(base / tls[key])
        if isinstance(tls.get("pinned"), list):
            tls["pinned"] = [str(base / p) if isinstance(p, str) else p for p in tls["pinned"]]
        out["tls"] = tls
    auth = out.get("auth")
    if isinstance(auth, dict) and isinstance(auth.get("client_ca"), str):
        out["auth"] = {**auth, "client_ca": str(base / auth["client_ca"])}
    return out


def _table(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {value!r}")
    return value


def _check_keys(table: Any, valid: tuple[str, ...], where: str) -> None:
    _table(table, where)
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} in {where}; valid: {', '.join(valid)}")


def _build(raw: dict[str, Any], registry: Registry) -> ServerConfig:
    node_id = _node_id(raw.get("id"), "id")
    peer_address = parse_address(_required(raw, "peer_address"), "peer_address")
    client_address = parse_address(_required(raw, "client_address"), "client_address")
    tls = _tls(raw.get("tls"))
    scheme = "https" if tls is not None and tls.client_api else "http"
    client_url = raw.get("client_url") or f"{scheme}://{format_address(client_address)}"
    _check_url(client_url, "client_url")

    peers_raw = _table(raw.get("peers"), "peers")
    peers: dict[str, PeerInfo] = {}
    for peer_id, table in sorted(peers_raw.items()):
        where = f"peers.{peer_id}"
        _node_id(peer_id, where)
        if peer_id == node_id:
            raise ConfigError(f"{where}: a node is not its own peer (remove it or change id)")
        _check_keys(table, PEER_KEYS, where)
        address = parse_address(_required(table, "peer_address", where), f"{where}.peer_address")
        url = _required(table, "client_url", where)
        _check_url(url, f"{where}.client_url")
        peers[peer_id] = PeerInfo(peer_address=address, client_url=url)

    known = {node_id, *peers}
    members_raw = raw.get("members")
    if members_raw is None:
        members = tuple(sorted(known))
    else:
        if not isinstance(members_raw, list) or not all(isinstance(m, str) for m in members_raw):
            raise ConfigError(f"members: expected a list of node ids, got {members_raw!r}")
        unknown = sorted(set(members_raw) - known)
        if unknown:
            raise ConfigError(f"members: {unknown[0]!r} is neither this node nor in [peers]")
        members = tuple(sorted(set(members_raw)))
        if not members:
            raise ConfigError("members: at least one initial voter is needed")

    protocol = raw.get("protocol", "raft")
    try:
        spec = registry.get(protocol)
    except KeyError as exc:
        raise ConfigError(f"protocol: {exc.args[0]}") from None
    service = raw.get("service")
    if service is not None:
        try:
            service_for(registry, spec, str(service))
        except KeyError as exc:
            raise ConfigError(f"service: {exc.args[0]}") from None
    max_value_bytes = _value_limit(raw)
    options = _table(raw.get("options"), "options")
    if spec.validate_options is not None:
        try:  # as the node will run them: under the protocol's server defaults
            spec.validate_options(spec.node_options(options))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"options: {exc}") from None

    try:
        auth = parse_auth_table(raw.get("auth"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if auth.client_ca is not None and (tls is None or not tls.client_api):
        raise ConfigError(
            "auth.client_ca: client certificates need the HTTP API on TLS ([tls] client_api = true)"
        )

    return ServerConfig(
        node_id=node_id,
        peer_address=peer_address,
        client_address=client_address,
        client_url=client_url.rstrip("/"),
        data_dir=Path(_required(raw, "data_dir")),
        secret=_read_secret(_required(raw, "secret_file"), "secret_file"),
        peers=peers,
        members=members,
        protocol=protocol,
        service=None if service is None else str(service),
        options=dict(options),
        admin_token=_admin_token(raw.get("admin_token_file")),
        tls=tls,
        max_value_bytes=max_value_bytes,
        max_key_bytes=_positive_int(raw, "max_key_bytes", DEFAULT_MAX_KEY_BYTES),
        fsync=_bool(raw, "fsync", True),
        inline_sync_bytes=_non_negative_int(raw, "inline_sync_bytes", DEFAULT_INLINE_SYNC_BYTES),
        request_timeout=_positive_float(raw, "request_timeout", 5.0),
        limits=_limits(raw, max_value_bytes),
        session_ttl=_non_negative_float(raw, "session_ttl", DEFAULT_SESSION_TTL),
        max_sessions=_positive_int(raw, "max_sessions", DEFAULT_MAX_SESSIONS),
        cluster_level=_cluster_level(raw),
        enable_fault_injection=_bool(raw, "enable_fault_injection", False),
        events_ring=_non_negative_int(raw, "events_ring", DEFAULT_EVENTS_RING),
        events_sample=_positive_int(raw, "events_sample", 1),
        log_level=_log_level(raw.get("log_level", "info")),
        auth=auth,
        cluster_id=_cluster_id(raw.get("cluster_id")),
        listen={
            str(name): parse_address(value, f"listen.{name}")
            for name, value in sorted(_table(raw.get("listen"), "listen").items())
        },
        keys_file=None if raw.get("keys_file") is None else Path(str(raw["keys_file"])),
    )


def largest_value_bytes(max_key_bytes: int) -> int:
    """The largest ``max_value_bytes`` whose commands still fit in one peer message."""
    return (PEER_MAX_MESSAGE_BYTES - COMMAND_OVERHEAD_BYTES) // 2 - max_key_bytes


def _value_limit(raw: dict[str, Any]) -> int:
    value = _positive_int(raw, "max_value_bytes", DEFAULT_MAX_VALUE_BYTES)
    key = _positive_int(raw, "max_key_bytes", DEFAULT_MAX_KEY_BYTES)
    largest = largest_value_bytes(key)
    if value > largest:
        raise ConfigError(
            f"max_value_bytes: {value} is too large: a command (two values and keys, for a "
            f"compare-and-set) must fit in one peer message of at most {PEER_MAX_MESSAGE_BYTES} bytes; "
            f"the largest allowed with max_key_bytes {key} is {largest}"
        )
    return value


def _limits(raw: dict[str, Any], max_value_bytes: int) -> ConnectionLimits:
    """Client connection limits (``conn_guard.py``); a missing setting keeps its default."""
    default = ConnectionLimits()
    buffered = _positive_int(raw, "max_buffered_bytes", default.max_buffered_bytes)
    if buffered < max_value_bytes:
        raise ConfigError(
            f"max_buffered_bytes: {buffered} is below max_value_bytes ({max_value_bytes}); "
            "no value that large could ever be written"
        )
    return ConnectionLimits(
        header_timeout=_positive_float(raw, "header_timeout", default.header_timeout),
        body_timeout=_positive_float(raw, "body_timeout", default.body_timeout),
        idle_timeout=_positive_float(raw, "idle_timeout", default.idle_timeout),
        max_connections=_positive_int(raw, "max_connections", default.max_connections),
        max_buffered_bytes=buffered,
    )


def _cluster_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not NODE_ID.match(value):
        raise ConfigError(f"cluster_id: bad id {value!r}; use 1-64 of A-Z a-z 0-9 _ . - (not first)")
    return value


def _required(table: dict[str, Any], key: str, where: str = "") -> Any:
    value = table.get(key)
    if value is None or value == "":
        name = f"{where}.{key}" if where else key
        raise ConfigError(f"{name} is required")
    return value


def _node_id(value: Any, setting: str) -> str:
    if value is None:
        raise ConfigError(f"{setting} (the node id) is required")
    if not isinstance(value, str) or not NODE_ID.match(value):
        raise ConfigError(f"{setting}: bad node id {value!r}; use 1-64 of A-Z a-z 0-9 _ . - (not first)")
    return value


def _check_url(url: Any, setting: str) -> None:
    if not isinstance(url, str):
        raise ConfigError(f"{setting}: expected a URL string, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{setting}: bad URL {url!r}; expected http://HOST:PORT")


def _read_secret(path: Any, setting: str) -> bytes:
    try:
        secret = Path(path).read_bytes().strip()
    except FileNotFoundError:
        raise ConfigError(f"{setting}: {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    if not secret:
        raise ConfigError(f"{setting}: {path} is empty")
    return secret


def _admin_token(path: Any) -> str | None:
    if path is None:
        return None
    token = _read_secret(path, "admin_token_file")
    try:
        return token.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"admin_token_file: {path} must hold an ASCII token") from None


def _tls(table: Any) -> TLSConfig | None:
    if not table:
        return None
    _check_keys(table, TLS_KEYS, "tls")
    cert, key, ca = table.get("cert"), table.get("key"), table.get("ca")
    if not cert or not key:
        raise ConfigError("tls: both cert and key are required")
    for name, value in (("cert", cert), ("key", key), ("ca", ca)):
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"tls.{name}: {value} not found")
    pinned = table.get("pinned", [])
    if not isinstance(pinned, list) or not all(isinstance(p, str) and p for p in pinned):
        raise ConfigError(f"tls.pinned: expected a list of certificate files, got {pinned!r}")
    for value in pinned:
        if not Path(value).is_file():
            raise ConfigError(f"tls.pinned: {value} not found")
    if not ca and not pinned:
        raise ConfigError(
            "tls: peer TLS needs ca (the CA that signed every node's certificate) or pinned "
            "(the nodes' certificate files); without one it stops only eavesdroppers"
        )
    client_api = table.get("client_api", False)
    if not isinstance(client_api, bool):
        raise ConfigError(f"tls.client_api: expected true or false, got {client_api!r}")
    tls = TLSConfig(
        cert=Path(cert),
        key=Path(key),
        ca=Path(ca) if ca else None,
        pinned=tuple(Path(p) for p in pinned),
        client_api=client_api,
    )
    try:
        tls.server_context()
        tls.client_context()
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"tls: cannot load cert/key/ca/pinned: {exc}") from None
    try:
        tls.identity()
    except (ValueError, OSError) as exc:
        raise ConfigError(f"tls: {exc}") from None
    return tls


def _positive_int(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return value


def _cluster_level(raw: dict[str, Any]) -> int:
    value = raw.get("cluster_level", RELEASE_LEVEL)
    if not valid_level(value):
        raise ConfigError(
            f"cluster_level: expected an integer {BASE_LEVEL}..{RELEASE_LEVEL} (the levels this "
            f"release applies), got {value!r}"
        )
    return int(value)


def _non_negative_int(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key}: expected an integer >= 0, got {value!r}")
    return value


def _positive_float(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{key}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _non_negative_float(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
        raise ConfigError(f"{key}: expected a number of seconds >= 0, got {value!r}")
    return float(value)


def _bool(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _log_level(value: Any) -> str:
    if value not in LOG_LEVELS:
        raise ConfigError(f"log_level: {value!r} is not one of {', '.join(LOG_LEVELS)}")
    return str(value)
