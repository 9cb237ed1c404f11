"""The edge rules of server/edge.py, one function at a time (the HTTP paths that use them:
test_edge_http.py; against real processes: test_edge_processes.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensuskit.core.client import ClientRequest, Op, ServiceOp
from consensuskit.core.messages import decode, encode
from consensuskit.server import edge
from consensuskit.server.edge import EdgeError

MAX = 2**63 - 1


# ---------------------------------------------------------------------- integers
@pytest.mark.parametrize("text", ["0", "7", "0007", str(MAX), "9" * 18])
def test_integers_in_range_are_accepted(text):
    assert edge.parse_int(text, "n") == int(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "²",  # str.isdigit() says yes
        "1²",
        "٣",  # an Arabic-Indic digit: isdigit() and int() both accept it
        "\uff11",  # a fullwidth one
        "-1",
        "+1",
        " 1",
        "1 ",
        "1_000",  # int() accepts underscores
        "0x10",
        str(MAX + 1),
        "99999999999999999999999",  # the value: msgpack cannot hold it
        "1" * 5000,  # int() of it raises ValueError (Python's digit limit)
        "0" * 20,  # 20 digits even if the value is small
    ],
)
def test_malformed_or_out_of_range_integers_are_refused(text):
    with pytest.raises(EdgeError) as info:
        edge.parse_int(text, "cas_version")
    assert info.value.status == 400 and info.value.code == "bad-request"
    assert "cas_version" in info.value.message


def test_a_minimum_is_enforced():
    with pytest.raises(EdgeError):
        edge.parse_int("0", "seq", minimum=1)


@given(st.text(max_size=25))
def test_parse_int_accepts_exactly_the_ascii_decimals_in_range(text):
    expected = text.isascii() and text.isdigit() and 1 <= len(text) <= 19 and int(text) <= MAX
    try:
        value = edge.parse_int(text, "n")
    except EdgeError:
        assert not expected
    else:
        assert expected and value == int(text)


# ---------------------------------------------------------------------- request ids
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("c:1", ("c", 1)),
        ("client-42:7", ("client-42", 7)),
        ("a:b:3", ("a:b", 3)),  # split at the last colon
        ("x" * 128 + ":" + str(MAX), ("x" * 128, MAX)),
        ("~!#$%&'()*+,-./;<=>?@[]^_`{|}:1", ("~!#$%&'()*+,-./;<=>?@[]^_`{|}", 1)),
    ],
)
def test_good_request_ids(header, expected):
    assert edge.parse_request_id(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "c",
        ":1",
        "c:",
        "c:0",
        "c:-1",
        "evil:99999999999999999999999",  # issue 10 item 1
        "c:" + "1" * 5000,
        "c\udcff:1",  # what aiohttp makes of the raw byte 0xff (surrogateescape)
        "c\xff:1",  # what a latin-1 decoding makes of it
        "cé:1",
        "c d:1",
        "c\t:1",
        "c\x00:1",
        "c\x7f:1",
        "x" * 129 + ":1",
        "anon.x:1",
        "read.x:1",
        "c:²",
    ],
)
def test_bad_request_ids_are_refused(header):
    with pytest.raises(EdgeError) as info:
        edge.parse_request_id(header)
    assert (info.value.status, info.value.code) == (400, "bad-request-id")


@given(st.text(max_size=40))
def test_an_accepted_request_id_is_always_storable(header):
    try:
        client_id, seq = edge.parse_request_id(header)
    except EdgeError:
        return
    edge.admit(ClientRequest(client_id=client_id, seq=seq, op=Op(kind="put", key="k", value="v")))


# ---------------------------------------------------------------------- keys and queries
@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("/v1/kv/plain", "plain"),
        ("/v1/kv/a%2Fb", "a/b"),
        ("/v1/kv/a/b", "a/b"),
        ("/v1/kv/%25FF%25FE", "%FF%FE"),  # the literal text %FF%FE has one spelling
        ("/v1/kv/%C3%A9t%C3%A9", "été"),
        ("/v1/kv/%c3%a9", "é"),  # hex digits in either case
        ("/v1/kv/a+b", "a+b"),  # '+' is not a space in a path
        ("/v1/kv/%00", "\x00"),
    ],
)
def test_keys_are_decoded_strictly_from_the_raw_path(raw, key):
    assert edge.key_from_path(raw, "/v1/kv/", 4096) == key


@pytest.mark.parametrize(
    "raw",
    [
        "/v1/kv/",  # empty
        "/v1/kv/%FF%FE",  # not UTF-8 (stored literally before)
        "/v1/kv/%C3",  # a cut UTF-8 sequence
        "/v1/kv/%ED%A0%80",  # an encoded surrogate
        "/v1/kv/%",
        "/v1/kv/a%2",
        "/v1/kv/%zz",
        "/v1/kv/é",  # raw non-ASCII
        "/v1/kv/" + "k" * 4097,
        "/v1/kv/" + "%C3%A9" * 2049,  # 2049 characters, 4098 bytes
    ],
)
def test_bad_keys_are_refused(raw):
    with pytest.raises(EdgeError) as info:
        edge.key_from_path(raw, "/v1/kv/", 4096)
    assert (info.value.status, info.value.code) == (400, "bad-key")


def test_a_key_of_exactly_the_limit_is_accepted():
    assert edge.key_from_path("/v1/kv/" + "%C3%A9" * 2048, "/v1/kv/", 4096) == "é" * 2048


@given(st.text(min_size=1, max_size=30))
def test_every_text_key_round_trips_through_percent_encoding(key):
    from urllib.parse import quote

    if any("\ud800" <= c <= "\udfff" for c in key):
        return  # a lone surrogate has no UTF-8 encoding: no client can send it
    assert edge.key_from_path("/v1/kv/" + quote(key, safe=""), "/v1/kv/", 4096 * 4) == key


def test_queries_are_decoded_strictly():
    assert edge.parse_query("") == {}
    assert edge.parse_query("prefix=a+b%2B&limit=3&&") == {"prefix": "a b+", "limit": "3"}
    assert edge.parse_query("flag") == {"flag": ""}
    assert edge.parse_query("cas_version=%C2%B2") == {"cas_version": "²"}  # then parse_int refuses it
    for bad in ("prefix=%FF", "prefix=%", "p%FF=1", "limit=1&limit=2"):
        with pytest.raises(EdgeError) as info:
            edge.parse_query(bad)
        assert (info.value.status, info.value.code) == (400, "bad-request")


def test_prefix_and_prev_value_limits():
    assert edge.check_prefix("p" * 10, 10) == "p" * 10
    with pytest.raises(EdgeError) as info:
        edge.check_prefix("é" * 6, 10)
    assert info.value.code == "bad-key"
    with pytest.raises(EdgeError) as info:
        edge.check_prev_value("v" * 11, 10)
    assert (info.value.status, info.value.code) == (413, "too-large")


# ---------------------------------------------------------------------- encoded once
BEYOND_64_BITS = "an integer is outside the 64-bit range (-2^63 .. 2^64-1) the log stores"
LONE_SURROGATE = "a string holds '\\udcff', a lone surrogate (JSON's \\udXXX escape alone): not Unicode text"


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (ClientRequest(client_id="c", seq=2**64, op=Op(kind="put", key="k", value="v")), BEYOND_64_BITS),
        (ClientRequest(client_id="c\udcff", seq=1, op=Op(kind="put", key="k", value="v")), LONE_SURROGATE),
        (
            ClientRequest(client_id="c", seq=1, op=Op(kind="put", key="k", value=object())),
            "TypeError: cannot encode object: not a registered message",
        ),
        (
            ClientRequest(
                client_id="c", seq=1, op=Op(kind="cas", key="k", value="v", expected_version=-(2**64))
            ),
            BEYOND_64_BITS,
        ),
        # Inside a service's value (a transaction's JSON): it said "TypeError: cannot
        # encode int: not a registered message", Python's words, not the client's.
        (
            ClientRequest(client_id="c", seq=1, op=ServiceOp(kind="txn", key="k", value={"v": [2**70]})),
            BEYOND_64_BITS,
        ),
    ],
)
def test_admit_refuses_what_the_log_could_not_store(request_, why):
    with pytest.raises(EdgeError) as info:
        edge.admit(request_)
    assert (info.value.status, info.value.code) == (400, "bad-request")
    assert info.value.message == f"the request cannot be stored: {why}"


def test_admit_accepts_what_the_log_can_store():
    request = ClientRequest(client_id="c", seq=MAX, op=Op(kind="put", key="k", value=b"\xff" * 10))
    edge.admit(request)
    assert decode(encode(request)) == request
