"""server/auth.py: the [auth] settings, password records, tokens, certificate names."""

from __future__ import annotations

import time

import pytest

from consensuskit.server.auth import (
    AuthConfig,
    TokenError,
    certificate_user,
    check_password,
    hash_password,
    mint_token,
    read_token,
    token_key,
    verify_password,
)
from consensuskit.server.config import ConfigError
from consensuskit.statemachines.auth import valid_password_record
from tests.server.runtime_harness import node_config


def test_defaults_and_a_full_table(tmp_path):
    assert node_config(tmp_path, "n1", ["n1"]).auth == AuthConfig()
    assert AuthConfig().status == "authenticated" and AuthConfig().metrics == "public"
    cfg = node_config(
        tmp_path,
        "n1",
        ["n1"],
        auth={"token_ttl": 60, "password_iterations": 5000, "status": "public", "metrics": "authenticated"},
    )
    assert cfg.auth == AuthConfig(
        token_ttl=60.0, password_iterations=5000, status="public", metrics="authenticated"
    )


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"token_tl": 5}, "unknown setting 'token_tl' in auth; valid: token_ttl"),
        ({"token_ttl": 0}, "auth.token_ttl"),
        ({"token_ttl": True}, "auth.token_ttl"),
        ({"password_iterations": 10}, "auth.password_iterations"),
        ({"status": "open"}, "auth.status: 'open' is not one of public, authenticated"),
        ({"metrics": "private"}, "auth.metrics"),
        ({"client_cert": "maybe"}, "auth.client_cert"),
        ({"client_ca": "/nonexistent/ca.pem"}, "auth.client_ca"),
    ],
)
def test_bad_settings_are_one_line_naming_them(tmp_path, table, needle):
    with pytest.raises(ConfigError) as info:
        node_config(tmp_path, "n1", ["n1"], auth=table)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_the_auth_table_in_a_file(tmp_path):
    from consensuskit.server.config import load_config

    (tmp_path / "secret").write_text("s")
    (tmp_path / "ca.pem").write_text("x")
    head = 'id = "n1"\npeer_address = "127.0.0.1:0"\nclient_address = "127.0.0.1:0"\n'
    head += 'data_dir = "d"\nsecret_file = "secret"\n'
    path = tmp_path / "n1.toml"
    path.write_text(head + 'auth = "yes"\n')
    with pytest.raises(ConfigError, match="auth: expected a table"):
        load_config(path)
    path.write_text(head + '[auth]\nclient_ca = "ca.pem"\n')  # relative to the file; needs TLS
    with pytest.raises(ConfigError, match="client_api"):
        load_config(path)
    path.write_text(head + '[auth]\nmetrics = "authenticated"\n')
    assert load_config(path).auth.metrics == "authenticated"


def test_a_client_ca_needs_the_api_on_tls(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError, match=r"client_api = true"):
        node_config(tmp_path, "n1", ["n1"], auth={"client_ca": str(ca)})


def test_password_records_verify_and_are_salted():
    a, b = hash_password("s3cret", 1000), hash_password("s3cret", 1000)
    assert a[0] == "pbkdf2-sha256" and a[1] == 1000 and a[2] != b[2] and a[3] != b[3]
    assert valid_password_record(a)
    assert verify_password(a, "s3cret") and verify_password(b, "s3cret")
    assert not verify_password(a, "s3cret ") and not verify_password(a, "")
    assert verify_password(list(a), "s3cret")  # as msgpack may hand it back
    for bad in (None, ("md5", 1, b"s", b"h"), ("pbkdf2-sha256", 0, b"s", b"h"), "x", ()):
        assert not verify_password(bad, "s3cret")
    assert verify_password(hash_password("\udcff odd", 1000), "\udcff odd")  # surrogates do not raise
    assert check_password("") and check_password(None) and check_password("x" * 1025)
    assert check_password("fine") is None


def test_tokens_round_trip_and_refuse_tampering_and_expiry():
    key = token_key(b"secret")
    assert key != token_key(b"other") and len(key) == 32
    now = time.time()
    token = mint_token(key, "alice", 7, now + 10)
    claims = read_token(key, token, now)
    assert (claims.user, claims.rev) == ("alice", 7) and claims.expires == pytest.approx(now + 10, abs=0.01)
    with pytest.raises(TokenError) as info:
        read_token(key, token, now + 11)
    assert info.value.code == "token-expired"
    body, mac = token[len("ck1.") :].split(".")
    forged = mint_token(key, "root", 7, now + 10)[len("ck1.") :].split(".")[0]
    for bad in (
        "",
        "ck1.",
        "Bearer",
        f"ck1.{forged}.{mac}",  # another payload under alice's MAC
        f"ck1.{body}.{mac[:-2]}",
        f"ck1.{body}.!!",
        mint_token(token_key(b"other"), "alice", 7, now + 10),
        "ck1." + "a" * 5000,
    ):
        with pytest.raises(TokenError) as info:
            read_token(key, bad, now)
        assert info.value.code == "invalid-token", bad


def test_certificate_user_is_the_subjects_common_name():
    cert = {"subject": ((("countryName", "NL"),), (("commonName", "alice"),))}
    assert certificate_user(cert) == "alice"
    assert certificate_user({"subject": ((("organizationName", "x"),),)}) is None
    assert certificate_user({}) is None and certificate_user(None) is None
