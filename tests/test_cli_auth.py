"""``consensuskit user|role|auth`` and ``--user`` on ``kv``/``status``: outputs and exit codes,
against an in-process cluster (the CLI runs in a worker thread, the cluster on the loop)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.server.runtime_harness import Cluster, async_test
from tests.test_cli import run

pytestmark = pytest.mark.timeout(120)

IDS = ["n1", "n2", "n3"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["role", "grant", "r", "--prefix", "a", "--permission", "all"], "valid: read, write, readwrite"),
        (["role", "grant", "r", "--permission", "read"], "--prefix"),
        (["user", "add", "x", "--password", "p", "--no-password"], "not both"),
        (["user", "add", "x", "--password", ""], "must not be empty"),
        (["user", "frob"], "valid: add, passwd, delete, list, grant-role, revoke-role"),
        (["auth", "on"], "valid: enable, disable, status"),
        (["user", "grant-role", "x"], "Missing argument 'role'"),
        (["kv", "get", "k", "--user", "nocolon"], "NAME:PASSWORD"),
        (["status", "--user", ":pw"], "NAME:PASSWORD"),
        (["user", "list", "--admin-token-file", "/nonexistent/token"], "cannot read"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, args, needle):
    code, out, err = run(capsys, *args)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err and "Traceback" not in err


@async_test
async def test_the_verbs_against_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with Cluster(tmp_path, IDS, auth={"password_iterations": 1000}) as c:
        await c.wait_leader()
        eps = ",".join(c.url(i) for i in IDS)
        token_file = str(tmp_path / "admin-token")  # runtime_harness writes it

        async def cli(*args: str) -> tuple[int, str, str]:
            return await asyncio.to_thread(run, capsys, *args, "--endpoints", eps)

        async def admin(*args: str) -> str:
            code, out, err = await cli(*args, "--admin-token-file", token_file)
            assert code == 0, (args, out, err)
            return out

        assert "ok (auth revision 1)" in await admin("user", "add", "root", "--password", "rootpw")
        await admin("user", "grant-role", "root", "root")
        await admin("role", "add", "app")
        await admin("role", "grant", "app", "--prefix", "app/", "--permission", "readwrite")
        await admin("user", "add", "alice", "--password", "alicepw")
        await admin("user", "add", "svc", "--no-password")
        await admin("user", "grant-role", "alice", "app")
        # Refusals: 1; a name the cluster finds malformed: 2.
        code, _, err = await cli("user", "add", "alice", "--password", "x", "--admin-token-file", token_file)
        assert code == 1 and "user-exists" in err
        code, _, err = await cli("user", "add", "a b:c", "--password", "x", "--admin-token-file", token_file)
        assert code == 2 and "bad-request" in err
        code, _, err = await cli("user", "list")  # no admin token: refused
        assert code == 1 and "unauthenticated" in err

        out = await admin("user", "list")
        assert out.splitlines() == [
            "alice\tapp",
            "root\troot",
            "svc\t-  (no password: certificate only)",
        ]
        roles = json.loads(await admin("role", "list", "--json"))
        assert roles["roles"][0] == {
            "name": "app",
            "permissions": [{"prefix": "app/", "permission": "readwrite"}],
            "builtin": False,
        }
        assert "auth enabled" in await admin("auth", "enable")
        assert (await cli("auth", "status"))[1].strip().startswith("auth enabled")

        alice = ("--user", "alice:alicepw")
        assert (await cli("kv", "put", "app/k", "v", *alice))[0] == 0
        code, out, _ = await cli("kv", "get", "app/k", *alice)
        assert (code, out) == (0, "v\n")
        code, _, err = await cli("kv", "put", "other", "v", *alice)
        assert code == 1 and "permission-denied" in err
        code, _, err = await cli("kv", "get", "app/k")  # no credentials
        assert code == 1 and "unauthenticated" in err
        code, _, err = await cli("kv", "get", "app/k", "--user", "alice:wrong")
        assert code == 1 and "wrong user name or password" in err
        code, out, _ = await cli("status", "--json", *alice)
        assert code == 0 and all(row["error"] is None for row in json.loads(out))
        code, out, _ = await cli("status", "--json")
        assert code == 1 and all(row["error"] for row in json.loads(out))

        # root manages auth with its own credentials once auth is enabled.
        root = ("--user", "root:rootpw")
        assert (await cli("user", "revoke-role", "alice", "app", *root))[0] == 0
        assert (await cli("role", "revoke", "app", "--prefix", "app/", *root))[0] == 0
        code, _, err = await cli("role", "revoke", "app", "--prefix", "app/", *root)
        assert code == 1 and "permission-not-granted" in err
        assert (await cli("user", "passwd", "alice", "--password", "new", *root))[0] == 0
        assert (await cli("role", "delete", "app", *root))[0] == 0
        assert (await cli("user", "delete", "alice", *root))[0] == 0
        assert (await cli("auth", "disable", *root))[0] == 0
        assert (await cli("kv", "get", "app/k"))[0] == 0  # open again


def test_a_password_not_given_is_prompted_for_twice_hidden(monkeypatch, capsys):
    asked = []

    def prompt(text, **kwargs):
        asked.append((text, kwargs))
        return "typed"

    seen = {}

    def command(verb, args, **kwargs):
        seen.update(verb=verb, args=args)
        return 0

    monkeypatch.setattr("typer.prompt", prompt)
    monkeypatch.setattr("consensuskit.server.auth_commands.auth_command", command)
    code, _, err = run(capsys, "user", "add", "carol")
    assert code == 0, err
    assert asked == [("Password", {"hide_input": True, "confirmation_prompt": True})]
    assert seen == {"verb": "user add", "args": {"name": "carol", "password": "typed"}}
    asked.clear()
    assert run(capsys, "user", "add", "svc", "--no-password")[0] == 0
    assert asked == [] and seen["args"] == {"name": "svc", "password": None}
