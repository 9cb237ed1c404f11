"""The kv service's verbs: ``consensuskit kv get|put|delete|cas|list`` (cli.py adds them
under the service's name, from the catalog).

Rules this module owns:
  * exit codes as everywhere in the CLI: 0 = done, 1 = the cluster said no or could not
    be reached (missing key, failed compare-and-swap, no quorum), 2 = bad input;
  * ``kv get`` prints the bare value (so shells can use it) and ``--json`` one JSON
    document; errors go to stderr as one line.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from consensuskit.cli_auth import EndpointsOpt, JsonOpt, UserOpt
from consensuskit.core.client import CONSISTENCY_LEVELS

if TYPE_CHECKING:  # the client and the server's helpers load when a verb runs, not at startup
    from consensuskit.client import Client, Entry

KV_ACTIONS = ("get", "put", "delete", "cas", "list")


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


kv_app = typer.Typer(help="Read and write keys on a running cluster.", no_args_is_help=True)
ConsistencyOpt = Annotated[str, typer.Option(help="linearizable, lease or stale.")]
ProtocolOpt = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        help="The cluster's protocol: one whose nodes may lie (pbft) makes the client ask every "
        "endpoint and trust an answer only once its reply quorum (f+1) gave it alike.",
    ),
]


@kv_app.command("get")
def kv_get(
    key: str,
    endpoints: EndpointsOpt = None,
    consistency: ConsistencyOpt = "linearizable",
    as_json: JsonOpt = False,
    user: UserOpt = None,
    protocol: ProtocolOpt = None,
) -> None:
    """Read a key."""
    raise typer.Exit(
        kv_command(
            "get",
            key,
            endpoints=endpoints,
            consistency=consistency,
            as_json=as_json,
            user=user,
            protocol=protocol,
        )
    )


@kv_app.command("put")
def kv_put(
    key: str,
    value: str,
    endpoints: EndpointsOpt = None,
    as_json: JsonOpt = False,
    user: UserOpt = None,
    protocol: ProtocolOpt = None,
) -> None:
    """Write a key."""
    raise typer.Exit(
        kv_command("put", key, value, endpoints=endpoints, as_json=as_json, user=user, protocol=protocol)
    )


@kv_app.command("delete")
def kv_delete(
    key: str,
    endpoints: EndpointsOpt = None,
    as_json: JsonOpt = False,
    user: UserOpt = None,
    protocol: ProtocolOpt = None,
) -> None:
    """Delete a key."""
    raise typer.Exit(
        kv_command("delete", key, endpoints=endpoints, as_json=as_json, user=user, protocol=protocol)
    )


@kv_app.command("cas")
def kv_cas(
    key: str,
    value: str,
    expected: Annotated[str | None, typer.Option(help="Swap only if the key holds this value.")] = None,
    expected_version: Annotated[
        int | None, typer.Option(min=0, help="Swap only at this version (0 = absent).")
    ] = None,
    endpoints: EndpointsOpt = None,
    as_json: JsonOpt = False,
    user: UserOpt = None,
    protocol: ProtocolOpt = None,
) -> None:
    """Compare-and-swap a key by value or by version."""
    raise typer.Exit(
        kv_command(
            "cas",
            key,
            value,
            endpoints=endpoints,
            expected=expected,
            expected_version=expected_version,
            as_json=as_json,
            user=user,
            protocol=protocol,
        )
    )


@kv_app.command("list")
def kv_list(
    prefix: Annotated[str, typer.Argument(help="Key prefix.")] = "",
    endpoints: EndpointsOpt = None,
    consistency: ConsistencyOpt = "linearizable",
    as_json: JsonOpt = False,
    user: UserOpt = None,
    protocol: ProtocolOpt = None,
) -> None:
    """List keys under a prefix."""
    raise typer.Exit(
        kv_command(
            "list",
            prefix,
            endpoints=endpoints,
            consistency=consistency,
            as_json=as_json,
            user=user,
            protocol=protocol,
        )
    )


# ---------------------------------------------------------------------- what the verbs do
def kv_command(
    action: str,
    key: str | None = None,
    value: str | None = None,
    *,
    endpoints: str | None = None,
    expected: str | None = None,
    expected_version: int | None = None,
    consistency: str = "linearizable",
    as_json: bool = False,
    timeout: float = 2.0,
    deadline: float = 10.0,
    user: str | None = None,
    protocol: str | None = None,
) -> int:
    """Run one key-value operation; returns the exit code.  ``user``: NAME:PASSWORD;
    ``protocol``: the cluster's, for its reply quorum (``reply_options``)."""
    from consensuskit.client import CasFailed, ClientError, NotFound, Unavailable
    from consensuskit.server.auth_commands import BadInput, cli_client
    from consensuskit.server.commands import default_endpoints

    problem = _check_kv_args(action, key, value, expected, expected_version, consistency)
    if problem:
        _err(problem)
        return 2
    try:
        urls = endpoints or default_endpoints()
        quorum = reply_options(protocol, urls)
        client = cli_client(urls, user, timeout=timeout, deadline=deadline, **quorum)
    except BadInput as exc:
        _err(str(exc))
        return 2
    try:
        with client:
            doc, text = _run_kv(client, action, key or "", value, expected, expected_version, consistency)
    except NotFound:
        doc, text, code = {"error": "not-found", "key": key}, None, 1
        if not as_json:
            _err(f"no key {key!r}")
    except CasFailed as exc:
        doc = {"error": "cas-failed", "key": key, "value": exc.current_value, "version": exc.current_version}
        text, code = None, 1
        if not as_json:
            _err(
                f"compare-and-swap failed: {key!r} holds {exc.current_value!r} "
                f"(version {exc.current_version})"
            )
    except Unavailable as exc:
        doc, text, code = {"error": "unavailable", "message": exc.message}, None, 1
        if not as_json:
            _err(exc.message)
    except ClientError as exc:
        doc, text = {"error": exc.code, "message": exc.message, "status": exc.status}, None
        # Bad input is 2; not allowed (401/403: credentials, permissions) is a refusal, 1.
        code = 2 if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (401, 403) else 1
        if not as_json:
            _err(f"{exc.code}: {exc.message}")
    else:
        code = 0
    if as_json:
        print(json.dumps(doc, indent=2, default=str))
    elif text is not None:
        print(text)
    return code


def reply_options(protocol: str | None, endpoints: str) -> dict[str, int]:
    """The client options a protocol's ``reply_quorum`` asks for (ProtocolSpec): none for
    a crash-fault protocol, ``replies``/``read_replies`` for one whose nodes may lie,
    counted over the endpoints given (every node of the cluster, for PBFT), with the
    protocol's default options."""
    from consensuskit.catalog import default_registry
    from consensuskit.client import parse_endpoints
    from consensuskit.server.auth_commands import BadInput

    if protocol is None:
        return {}
    registry = default_registry()
    if protocol not in registry.names():
        raise BadInput(f"unknown protocol {protocol!r}; valid: {', '.join(registry.names())}")
    quorum = registry.get(protocol).reply_quorum
    if quorum is None:
        return {}
    try:
        nodes = len(parse_endpoints(endpoints))
    except ValueError as exc:
        raise BadInput(f"bad --endpoints: {exc}") from None
    return {"replies": quorum(nodes, False, {}), "read_replies": quorum(nodes, True, {})}


def _check_kv_args(
    action: str,
    key: str | None,
    value: str | None,
    expected: str | None,
    expected_version: int | None,
    consistency: str,
) -> str | None:
    if action not in KV_ACTIONS:
        return f"unknown action {action!r}; valid: {', '.join(KV_ACTIONS)}"
    if action != "list" and not key:
        return f"kv {action} needs a KEY"
    if action in ("put", "cas") and value is None:
        return f"kv {action} needs a VALUE"
    if action == "cas" and (expected is None) == (expected_version is None):
        return "kv cas needs exactly one of --expected VALUE or --expected-version N (0 = absent)"
    if expected_version is not None and expected_version < 0:
        return f"--expected-version must be >= 0, not {expected_version}"
    if consistency not in CONSISTENCY_LEVELS:
        return f"unknown consistency {consistency!r}; valid: {', '.join(CONSISTENCY_LEVELS)}"
    return None


def _entry_doc(e: Entry) -> dict[str, Any]:
    return {"key": e.key, "value": e.value, "version": e.version}


def _run_kv(
    client: Client,
    action: str,
    key: str,
    value: str | None,
    expected: str | None,
    expected_version: int | None,
    consistency: str,
) -> tuple[Any, str | None]:
    if action == "get":
        entry = client.get(key, consistency=consistency)
        return _entry_doc(entry), str(entry.value)
    if action == "put":
        assert value is not None
        w = client.put(key, value)
        return {"key": key, "version": w.version, "index": w.index}, f"ok (version {w.version})"
    if action == "cas":
        assert value is not None
        w = client.cas(key, value, expected=expected, expected_version=expected_version)
        return {"key": key, "version": w.version, "index": w.index}, f"ok (version {w.version})"
    if action == "delete":
        d = client.delete(key)
        return {"key": key, "deleted": d.deleted}, "deleted" if d.deleted else "absent"
    entries = client.list(key, consistency=consistency)
    text = "\n".join(f"{e.key}\t{e.value}" for e in entries)
    return [_entry_doc(e) for e in entries], text or None
