"""The msgpack codec: round trips of every registered message and rejection of bad frames."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import inspect

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import consensuskit.core.client as client_mod
import consensuskit.protocols.raft.messages as raft_mod
from consensuskit.core import messages
from consensuskit.core.client import (
    EDGE_JUDGED,
    OP_KINDS,
    VIAS,
    ClientRequest,
    ClientResponse,
    Op,
    Principal,
    ServiceOp,
)
from consensuskit.core.messages import (
    CODEC_VERSION,
    EXT_MESSAGE,
    CodecError,
    decode,
    encode,
    message,
    registered_messages,
)
from consensuskit.protocols.raft.messages import (
    COMMAND,
    CONFIG,
    NOOP,
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    ForwardRefused,
    ForwardRequest,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    LogEntry,
    ReadIndexRequest,
    ReadIndexResponse,
    RejoinConfig,
    Rejoining,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    TimeoutNow,
)
from consensuskit.protocols.zab.messages import Txn

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies -------------------------------------------------------------------------

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
small_ints = st.integers(min_value=0, max_value=1000)
names = st.text(max_size=6)

# Values that survive msgpack unchanged (lists decode as tuples, so use tuples).
plain = st.recursive(
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3).map(tuple) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)

ops = st.builds(
    Op,
    kind=st.sampled_from(OP_KINDS),
    key=names,
    value=plain,
    expected=plain,
    expected_version=st.none() | small_ints,
)
service_ops = st.builds(ServiceOp, kind=names.filter(bool), key=names, value=plain, read=st.booleans())
principals = st.builds(Principal, name=names, via=st.sampled_from(VIAS), rev=ints)
client_requests = st.builds(
    ClientRequest, client_id=names, seq=ints, op=ops | service_ops, principal=st.none() | principals
)
client_responses = st.builds(
    ClientResponse,
    client_id=names,
    seq=ints,
    ok=st.booleans(),
    result=plain,
    error=st.none() | names,
    leader_hint=st.none() | names,
    index=small_ints,
)
configs = st.builds(
    ClusterConfig,
    voters=st.lists(names, max_size=4).map(tuple),
    learners=st.lists(names, max_size=3).map(tuple),
)
log_entries = st.one_of(
    st.builds(LogEntry, term=small_ints, index=small_ints, kind=st.just(NOOP), data=st.none()),
    st.builds(LogEntry, term=small_ints, index=small_ints, kind=st.just(COMMAND), data=client_requests),
    st.builds(LogEntry, term=small_ints, index=small_ints, kind=st.just(CONFIG), data=configs),
)
append_entries = st.builds(
    AppendEntries,
    term=small_ints,
    leader=names,
    prev_log_index=small_ints,
    prev_log_term=small_ints,
    entries=st.lists(log_entries, max_size=4).map(tuple),
    leader_commit=small_ints,
)
snapshots = st.builds(Snapshot, last_index=small_ints, last_term=small_ints, config=configs, data=plain)

STRATEGIES: dict[type, st.SearchStrategy] = {
    Op: ops,
    ServiceOp: service_ops,
    ClientRequest: client_requests,
    Principal: principals,
    ClientResponse: client_responses,
    ClusterConfig: configs,
    LogEntry: log_entries,
    RequestVote: st.builds(
        RequestVote,
        term=ints,
        candidate=names,
        last_log_index=ints,
        last_log_term=ints,
        pre_vote=st.booleans(),
        transfer=st.booleans(),
    ),
    RequestVoteResponse: st.builds(
        RequestVoteResponse, term=ints, granted=st.booleans(), pre_vote=st.booleans()
    ),
    AppendEntries: append_entries,
    AppendEntriesResponse: st.builds(
        AppendEntriesResponse,
        term=ints,
        success=st.booleans(),
        index=ints,
        conflict_term=ints,
        conflict_index=ints,
    ),
    Heartbeat: st.builds(Heartbeat, term=ints, leader=names, commit=ints, context=ints),
    HeartbeatResponse: st.builds(HeartbeatResponse, term=ints, context=ints),
    Snapshot: snapshots,
    InstallSnapshot: st.builds(InstallSnapshot, term=ints, leader=names, snapshot=snapshots),
    InstallSnapshotResponse: st.builds(InstallSnapshotResponse, term=ints, index=ints),
    TimeoutNow: st.builds(TimeoutNow, term=ints, leader=names),
    HardState: st.builds(HardState, term=ints, voted_for=st.none() | names),
    RejoinConfig: st.builds(
        RejoinConfig,
        voters=st.lists(names, max_size=4).map(tuple),
        learners=st.lists(names, max_size=3).map(tuple),
        rejoining=st.lists(names, max_size=2).map(tuple),
    ),
}
STRATEGIES[ForwardRequest] = st.builds(ForwardRequest, term=ints, request=client_requests)
STRATEGIES[ForwardRefused] = st.builds(ForwardRefused, term=ints, response=client_responses)
STRATEGIES[ReadIndexRequest] = st.builds(ReadIndexRequest, term=ints, client_id=names, seq=ints)
STRATEGIES[ReadIndexResponse] = st.builds(
    ReadIndexResponse, term=ints, client_id=names, seq=ints, index=ints, leader=st.none() | names
)
STRATEGIES[Rejoining] = st.builds(
    Rejoining,
    term=ints,
    response=st.one_of(
        STRATEGIES[AppendEntriesResponse], STRATEGIES[HeartbeatResponse], STRATEGIES[InstallSnapshotResponse]
    ),
    demoted_at=ints,
)

any_message = st.sampled_from(sorted(STRATEGIES, key=lambda c: c.__name__)).flatmap(
    lambda cls: STRATEGIES[cls]
)

# Fixed, fully nested samples for exhaustive byte-level checks.
REQ = ClientRequest(client_id="c1", seq=7, op=Op(kind="cas", key="k", value=(1, "x"), expected_version=3))
CFG = ClusterConfig(voters=("a", "b", "c"), learners=("d",))
AE = AppendEntries(
    term=3,
    leader="a",
    prev_log_index=4,
    prev_log_term=2,
    entries=(
        LogEntry(term=3, index=5, kind=NOOP),
        LogEntry(term=3, index=6, kind=COMMAND, data=REQ),
        LogEntry(term=3, index=7, kind=CONFIG, data=CFG),
    ),
    leader_commit=4,
)
INSTALL = InstallSnapshot(
    term=9,
    leader="b",
    snapshot=Snapshot(last_index=70, last_term=8, config=CFG, data={"data": (("k", b"v", 2),), "n": 1.5}),
)
SAMPLES = [
    REQ,
    AE,
    INSTALL,
    HardState(term=2, voted_for=None),
    RequestVote(term=1, candidate="a", last_log_index=0, last_log_term=0, pre_vote=True),
]


def marker(tag: int) -> msgpack.ExtType:
    return msgpack.ExtType(EXT_MESSAGE, tag.to_bytes(2, "big"))


def frame(tag: int, *fields: object) -> bytes:
    """A hand-built frame: version byte + the array [marker(tag), *fields]."""
    return bytes([CODEC_VERSION]) + msgpack.packb([marker(tag), *fields], use_bin_type=True)


def raises_codec(data: bytes) -> str:
    with pytest.raises(CodecError) as info:
        decode(data)
    return str(info.value)


# -- round trips ---------------------------------------------------------------------------


def test_strategies_cover_every_raft_and_client_message():
    mine = {
        cls
        for cls in registered_messages().values()
        if cls.__module__ in (raft_mod.__name__, client_mod.__name__)
    }
    assert mine == set(STRATEGIES)
    assert registered_messages()[1] is Op
    assert registered_messages()[11] is LogEntry
    assert registered_messages()[22] is HardState


@pytest.mark.parametrize("cls", sorted(STRATEGIES, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_round_trip_each_message_type(cls):
    @FAST
    @given(STRATEGIES[cls])
    def check(msg):
        data = encode(msg)
        assert data[0] == CODEC_VERSION
        back = decode(data)
        assert type(back) is cls
        assert back == msg
        assert encode(back) == data

    check()


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_nested_samples(msg):
    back = decode(encode(msg))
    assert back == msg
    assert type(back) is type(msg)


def test_nested_entries_come_back_as_typed_objects():
    back = decode(encode(AE))
    assert isinstance(back.entries, tuple)
    assert [type(e) for e in back.entries] == [LogEntry, LogEntry, LogEntry]
    assert back.entries[1].data.op == REQ.op
    assert back.entries[2].data.voters == ("a", "b", "c")


def test_messages_inside_plain_containers():
    value = {"msgs": (REQ, CFG), "n": 3}
    assert decode(encode(value)) == value


def test_encode_rejects_unregistered_objects():
    @dataclasses.dataclass(frozen=True)
    class Unregistered:
        x: int

    with pytest.raises(TypeError, match="Unregistered"):
        encode(Unregistered(x=1))


def test_sets_encode_as_sorted_sequences():
    assert decode(encode({3, 1, 2})) == (1, 2, 3)


# -- frame-level errors --------------------------------------------------------------------


def test_empty_frame():
    assert raises_codec(b"") == "empty frame"


@pytest.mark.parametrize("version", [0, 1, 255])
def test_wrong_version_byte(version):
    data = bytes([version]) + encode(REQ)[1:]
    assert raises_codec(data) == f"unsupported codec version {version} (this build speaks 2)"


def test_version_byte_alone_is_truncated():
    assert raises_codec(bytes([CODEC_VERSION])).startswith("malformed frame")


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_prefix_of_a_frame_raises_codec_error(msg):
    data = encode(msg)
    assert len(data) > 5
    for n in range(len(data)):
        with pytest.raises(CodecError):
            decode(data[:n])
    assert decode(data) == msg


@FAST
@given(any_message)
def test_every_prefix_of_random_frames_raises_codec_error(msg):
    data = encode(msg)
    for n in range(len(data)):
        with pytest.raises(CodecError):
            decode(data[:n])


def test_trailing_bytes_are_rejected():
    message_text = raises_codec(encode(REQ) + b"\x00")
    assert message_text.startswith("malformed frame")


def test_unknown_tag():
    assert raises_codec(frame(9999, 1, 2)) == "unknown message tag 9999"


@pytest.mark.parametrize("payload", [b"", b"\x00"], ids=["empty", "short"])
def test_marker_that_is_not_a_two_byte_tag(payload):
    data = bytes([CODEC_VERSION]) + msgpack.packb([msgpack.ExtType(EXT_MESSAGE, payload), 1, None])
    assert raises_codec(data) == "malformed message marker"


LONG_EXTENSION = (
    "malformed frame: an extension longer than a message marker (2 bytes): "
    "msgpack's timestamp, or another we never write"
)


@pytest.mark.parametrize("code", [EXT_MESSAGE, 7])
def test_an_extension_longer_than_a_marker_is_refused_while_parsing(code):
    data = bytes([CODEC_VERSION]) + msgpack.packb([msgpack.ExtType(code, b"\x00\x16\x00"), 1, None])
    assert raises_codec(data) == LONG_EXTENSION


@pytest.mark.parametrize(
    "value",
    [
        marker(22),  # a bare marker as the whole frame
        [1, marker(22)],  # not at the head of an array
        {"k": marker(22)},  # as a map value
        [marker(22), 1, marker(22)],  # as a field of a message whose type is not checked
    ],
    ids=["bare", "not-head", "map-value", "field"],
)
def test_marker_outside_a_message(value):
    data = bytes([CODEC_VERSION]) + msgpack.packb(value)
    assert "marker" in raises_codec(data).lower()


def test_too_few_fields():
    # HardState has 2 fields: term, voted_for
    assert raises_codec(frame(22, 1)) == "malformed HardState: expected 2 fields, got 1"


def test_too_many_fields():
    assert raises_codec(frame(22, 1, "a", 3)) == "malformed HardState: expected 2 fields, got 3"


def test_correct_hand_built_frame_decodes():
    assert decode(frame(22, 4, "n1")) == HardState(term=4, voted_for="n1")
    assert decode(frame(22, 4, None)) == HardState(term=4, voted_for=None)


def test_str_where_int_declared():
    assert raises_codec(frame(22, "4", None)) == "malformed HardState: field 'term' has type str"


def test_int_where_optional_str_declared():
    assert raises_codec(frame(22, 4, 5)) == "malformed HardState: field 'voted_for' has type int"


def test_bool_where_int_declared():
    assert raises_codec(frame(20, True, 3, -1)) == "malformed InstallSnapshotResponse: field 'term' is a bool"


@pytest.mark.parametrize("term", [2**63, 2**64 - 1])
def test_an_int_field_beyond_int64_is_refused(term):
    """Issue 10: a peer's term of 2^64-1 was adopted, and the next term (2^64) could not
    be stored: the node halted.  Integers on the wire stay within int64."""
    assert (
        raises_codec(frame(21, term, "n1")) == f"malformed TimeoutNow: field 'term' is {term}, outside int64"
    )
    assert (
        raises_codec(frame(22, term, None)) == f"malformed HardState: field 'term' is {term}, outside int64"
    )


def test_the_int64_bounds_and_negative_ints_still_decode():
    assert decode(frame(22, 2**63 - 1, None)) == HardState(term=2**63 - 1, voted_for=None)
    assert decode(frame(20, 1, 3, -1)).next_offset == -1  # InstallSnapshotResponse's sentinel
    assert decode(frame(20, 1, 3, -(2**63))).next_offset == -(2**63)
    # Not a declared int field: left alone (an Op's value is any msgpack value).
    assert decode(encode(Op(kind="put", key="k", value=2**64 - 1))).value == 2**64 - 1


def test_a_nested_message_field_holds_that_message_class():
    import consensuskit.protocols.paxos.multi_messages as multi

    heartbeat = multi.Heartbeat(ballot=multi.Ballot(round=1, node=1), leader="n1", commit=0, round=0)
    good = encode(heartbeat)
    assert decode(good) == heartbeat
    tag = messages._TAG_OF[multi.Heartbeat]
    assert raises_codec(frame(tag, 5, "n1", 0, 0)) == "malformed Heartbeat: field 'ballot' has type int"
    snapshot_tag = messages._TAG_OF[raft_mod.Snapshot]
    # Snapshot(last_index, last_term, config: ClusterConfig, data): a tuple where a config belongs
    assert (
        raises_codec(frame(snapshot_tag, 1, 1, [], None))
        == "malformed Snapshot: field 'config' has type tuple"
    )


def test_a_tuple_of_messages_holds_only_that_class():
    tag = messages._TAG_OF[AppendEntries]
    msg = raises_codec(frame(tag, 1, "n1", 0, 0, [5], 0))
    assert msg == "malformed AppendEntries: field 'entries' holds a int, not a LogEntry"
    heartbeat = raft_mod.Heartbeat(term=1, leader="n1", commit=0)
    msg = raises_codec(
        encode(
            AppendEntries(
                term=1, leader="n1", prev_log_index=0, prev_log_term=0, entries=(heartbeat,), leader_commit=0
            )
        )
    )  # type: ignore[arg-type]
    assert msg == "malformed AppendEntries: field 'entries' holds a Heartbeat, not a LogEntry"


def test_a_tuple_of_a_scalar_type_holds_only_that_type():
    """A peer's map among a Prepare's participants (declared ``tuple[str, ...]``) became a
    message destination and halted a 2PC participant: items are checked like fields."""
    from consensuskit.protocols.commit.messages import Prepare, TxnPart

    part = TxnPart(compare=(), success=(("put", "k", "v"),), failure=())
    good = Prepare(txn="n1.1.1", coordinator="n1", participants=("n1", "n2"), part=part)
    assert decode(encode(good)) == good
    for bad, why in [
        ({"a": "b"}, "holds a dict, not a str"),
        (5, "holds a int, not a str"),
        (b"n2", "holds a bytes, not a str"),
        (None, "holds a NoneType, not a str"),
        (("n2",), "holds a tuple, not a str"),
    ]:
        forged = dataclasses.replace(good, participants=("n1", bad))  # type: ignore[arg-type]
        assert raises_codec(encode(forged)) == f"malformed Prepare: field 'participants' {why}"
    # tuple[int, ...]: within int64, never a bool (a rejoin's incarnations).
    config = raft_mod.RejoinConfig(voters=("n1",), rejoining=("n1",), incarnations=(3,))
    assert decode(encode(config)) == config
    for bad, why in [
        (2**63, f"holds {2**63}, outside int64"),
        (True, "holds a bool, not a int"),
        ("3", "holds a str, not a int"),
    ]:
        forged = dataclasses.replace(config, incarnations=(bad,))
        assert raises_codec(encode(forged)) == f"malformed RejoinConfig: field 'incarnations' {why}"


def test_a_tuple_of_messages_takes_a_registered_subclass_of_its_class():
    """A family may extend an entry type (gossip's KVEntry is an Entry) and send it in its
    base's messages; a sibling class is still refused."""
    from consensuskit.protocols.gossip.messages import Entry, KVEntry, Rumor

    mixed = Rumor(
        entries=(
            Entry(key="a", counter=1, origin="n1"),
            KVEntry(key="b", counter=2, origin="n2", deleted=True),
        )
    )
    back = decode(encode(mixed))
    assert back == mixed and [type(e) for e in back.entries] == [Entry, KVEntry]
    heartbeat = raft_mod.Heartbeat(term=1, leader="n1", commit=0)
    assert raises_codec(encode(Rumor(entries=(heartbeat,)))) == (  # type: ignore[arg-type]
        "malformed Rumor: field 'entries' holds a Heartbeat, not a Entry"
    )


def test_int_where_bool_declared():
    # RequestVoteResponse(term, granted, pre_vote)
    msg = raises_codec(frame(13, 1, 1, False))
    assert msg == "malformed RequestVoteResponse: field 'granted' has type int"


def test_bytes_where_str_declared():
    msg = raises_codec(frame(21, 1, b"leader"))
    assert msg == "malformed TimeoutNow: field 'leader' has type bytes"


def test_none_where_tuple_declared():
    # ClusterConfig(voters, learners)
    msg = raises_codec(frame(10, None, []))
    assert msg == "malformed ClusterConfig: field 'voters' has type NoneType"


def test_constructor_validation_becomes_codec_error():
    # Op(kind, key, value, expected, expected_version); kind must be one of OP_KINDS
    msg = raises_codec(frame(1, "explode", "k", None, None, None))
    assert msg.startswith("malformed Op: unknown op kind 'explode'")


def test_a_request_op_is_an_op_or_a_service_op():
    # ClientRequest(client_id, seq, op, consistency): a peer's integer where the op belongs
    assert raises_codec(frame(2, "c", 1, 5, None)) == "malformed ClientRequest: field 'op' has type int"
    ok = ClientRequest(client_id="c", seq=1, op=ServiceOp(kind="incr", key="x", value=2))
    assert decode(encode(ok)) == ok
    # ServiceOp(kind, key, value, read): a kind is needed
    msg = raises_codec(frame(4, "", "x", None, False))
    assert msg.startswith("malformed ServiceOp: an operation needs a kind")


def test_nested_malformed_message_is_reported():
    data = bytes([CODEC_VERSION]) + msgpack.packb({"hs": [marker(22), "x", None]})
    assert raises_codec(data) == "malformed HardState: field 'term' has type str"


@pytest.mark.parametrize("code", [0, 2, 5, 127])
def test_unknown_ext_type(code):
    data = bytes([CODEC_VERSION]) + msgpack.packb(msgpack.ExtType(code, b"\x00\x01"))
    assert raises_codec(data) == f"unknown msgpack extension type {code}"


def test_timestamp_ext_type_is_rejected():
    data = bytes([CODEC_VERSION]) + b"\xd6\xff\x00\x00\x00\x01"  # fixext4, type -1
    assert raises_codec(data) == LONG_EXTENSION
    # Shorter than any timestamp msgpack writes: msgpack refuses those itself.
    short = raises_codec(bytes([CODEC_VERSION]) + b"\xd4\xff\x01")
    assert short.startswith("malformed frame: invalid timestamp")


BIG = 1 << 21  # past the engine's frame limit: the reference decodes these


def test_a_timestamp_deep_in_a_large_frame_is_refused():
    """In a snapshot-sized frame, nested in a map key, a message field and tuples: found
    while parsing, wherever it sits (no walk of the decoded value)."""
    stamp = datetime.datetime.now(datetime.UTC)
    entry = [marker(messages._TAG_OF[LogEntry]), 1, 1, COMMAND, [("k", stamp)]]
    state = {"pad": b"x" * BIG, (1, 2): [entry]}
    with pytest.raises(CodecError, match="longer than a message marker"):
        decode(bytes([CODEC_VERSION]) + msgpack.packb(state, datetime=True))
    without = {"pad": b"x" * BIG, (1, 2): [[*entry[:4], ("k", 1)]]}  # the same, no timestamp
    assert decode(bytes([CODEC_VERSION]) + msgpack.packb(without))[(1, 2)][0].data == ("k", 1)
    keyed = {"pad": b"x" * BIG, (1, (stamp,)): 3}
    with pytest.raises(CodecError, match="longer than a message marker"):
        decode(bytes([CODEC_VERSION]) + msgpack.packb(keyed, datetime=True))


def test_timestamp_header_bytes_inside_a_large_value_are_not_an_extension():
    """The bytes that begin a timestamp, inside a bin, a str and an int of a large frame,
    decode as those values."""
    state = (b"\xd6\xff\x00\x00\x00\x01" * (BIG // 6), "\u00d6\u00ff", 0xD7FF, 0xC70CFF)
    assert decode(encode(state)) == state


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_garbage_returns_or_raises_codec_error(data):
    with contextlib.suppress(CodecError):
        decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_garbage_after_version_byte(data):
    with contextlib.suppress(CodecError):
        decode(bytes([CODEC_VERSION]) + data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_corrupted_frames_return_or_raise_codec_error(msg, data):
    frame_bytes = bytearray(encode(msg))
    pos = data.draw(st.integers(min_value=0, max_value=len(frame_bytes) - 1))
    frame_bytes[pos] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(CodecError):
        decode(bytes(frame_bytes))


# -- registry --------------------------------------------------------------------------------


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test vanish afterwards."""
    monkeypatch.setattr(messages, "_BY_TAG", dict(messages._BY_TAG))
    monkeypatch.setattr(messages, "_TAG_OF", dict(messages._TAG_OF))
    monkeypatch.setattr(messages, "_CHECKS", dict(messages._CHECKS))
    monkeypatch.setattr(messages, "_ENCODERS", dict(messages._ENCODERS))
    monkeypatch.setattr(messages, "_MARKERS", dict(messages._MARKERS))


def test_duplicate_tag_raises(scratch_registry):
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Impostor:
        term: int

    before = registered_messages()
    with pytest.raises(ValueError) as info:
        message(12)(Impostor)
    assert str(info.value) == "message tag 12 used by both RequestVote and Impostor"
    assert registered_messages() == before
    assert Impostor not in messages._TAG_OF
    assert type(decode(encode(SAMPLES[4]))) is RequestVote


def test_reregistering_same_class_is_idempotent(scratch_registry):
    assert message(22)(HardState) is HardState
    assert registered_messages()[22] is HardState


def test_non_dataclass_cannot_be_registered(scratch_registry):
    class Plain:
        pass

    with pytest.raises(TypeError, match="Plain must be a dataclass"):
        message(9001)(Plain)
    assert 9001 not in registered_messages()


def test_new_message_with_mixed_field_types(scratch_registry):
    @message(9002)
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Probe:
        ratio: float
        maybe: int | None
        flag: bool
        blob: bytes
        attrs: dict

    msg = Probe(ratio=0.5, maybe=None, flag=True, blob=b"\x00", attrs={"a": 1})
    assert decode(encode(msg)) == msg
    # msgpack has one integer type: an int is accepted for a float field.
    assert decode(frame(9002, 2, 3, False, b"", {})) == Probe(
        ratio=2, maybe=3, flag=False, blob=b"", attrs={}
    )
    assert raises_codec(frame(9002, True, 3, False, b"", {})) == "malformed Probe: field 'ratio' is a bool"
    assert raises_codec(frame(9002, 1.0, 3, False, "s", {})) == "malformed Probe: field 'blob' has type str"
    assert (
        raises_codec(frame(9002, 1.0, 3, False, b"", [])) == "malformed Probe: field 'attrs' has type tuple"
    )


def test_slotted_messages_are_built_without_init_and_still_validated(scratch_registry):
    calls = []

    @message(9003)
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Checked:
        term: int
        note: str = "n"

        def __post_init__(self) -> None:
            calls.append(self.term)
            if self.term < 0:
                raise ValueError("term must not be negative")

    original = Checked(term=4, note="x")
    built = decode(encode(original))
    assert calls == [4, 4]  # the decoded copy ran __post_init__ too
    assert built == original and hash(built) == hash(original) and type(built) is Checked
    assert raises_codec(frame(9003, -1, "x")).startswith("malformed Checked: term must not be negative")
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.term = 5  # type: ignore[misc]


def test_a_message_with_its_own_init_is_built_through_it(scratch_registry):
    @message(9004)
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True, init=False)
    class Custom:
        term: int

        def __init__(self, *, term: int) -> None:
            object.__setattr__(self, "term", term * 10)

    assert decode(frame(9004, 3)).term == 30  # a field-by-field build would give 3


def test_a_frame_without_appended_fields_decodes_with_their_absent_values(scratch_registry):
    @message(9005)
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Grown:
        term: int
        note: str | None = dataclasses.field(default=None, metadata=messages.appended("old"))
        count: int = dataclasses.field(default=0, metadata=messages.appended(-1))

    new = Grown(term=1, note=None, count=2)
    assert decode(encode(new)) == new  # every field is written, the default too
    # Frames of the releases before ``note`` and before ``count``:
    assert decode(frame(9005, 1)) == Grown(term=1, note="old", count=-1)
    assert decode(frame(9005, 1, "x")) == Grown(term=1, note="x", count=-1)
    # What a frame holds is still checked; a frame without a field never appended is refused.
    assert raises_codec(frame(9005, 1, 5)) == "malformed Grown: field 'note' has type int"
    assert raises_codec(frame(9005)) == "malformed Grown: expected 1-3 fields, got 0"
    assert raises_codec(frame(9005, 1, "x", 2, 3)) == "malformed Grown: expected 1-3 fields, got 4"


def test_an_appended_field_must_come_last(scratch_registry):
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Misordered:
        note: str | None = dataclasses.field(default=None, metadata=messages.appended(None))
        term: int = 0

    with pytest.raises(TypeError, match="after an appended field"):
        message(9006)(Misordered)
    assert 9006 not in registered_messages()


def test_a_client_request_of_the_release_before_principals_decodes_as_judged_at_the_edge():
    # ClientRequest(client_id, seq, op, consistency) as that release wrote it: 4 fields.
    op = [marker(1), "put", "k", "v", None, None]
    old = decode(frame(2, "c", 3, op, None))
    assert old == ClientRequest(
        client_id="c", seq=3, op=Op(kind="put", key="k", value="v"), principal=EDGE_JUDGED
    )
    # This release writes the field, None included: nobody, not the old release's edge.
    assert decode(encode(ClientRequest(client_id="c", seq=3, op=Op(kind="get", key="k")))).principal is None


def test_registering_a_frozen_slotted_message_speeds_up_its_init_and_keeps_its_behaviour(scratch_registry):
    def make():
        @dataclasses.dataclass(frozen=True, slots=True)
        class Mixed:
            term: int
            leader: str = "n1"
            entries: tuple = dataclasses.field(default=(), kw_only=True)
            commit: int = dataclasses.field(kw_only=True)

            def __post_init__(self) -> None:
                seen.append(self.term)

        return Mixed

    seen: list[int] = []
    plain, fast = make(), make()
    generated = fast.__init__
    message(9007)(fast)
    assert fast.__init__ is not generated  # the descriptor-setting __init__ took its place
    assert "__setattr__" not in fast.__init__.__code__.co_names
    assert str(inspect.signature(fast)) == str(inspect.signature(plain))
    assert fast.__init__.__qualname__ == generated.__qualname__
    for cls in (plain, fast):
        msg = cls(3, commit=7)
        assert (msg.term, msg.leader, msg.entries, msg.commit) == (3, "n1", (), 7)
        assert cls(4, "n2", entries=(1,), commit=0).leader == "n2"
        with pytest.raises(dataclasses.FrozenInstanceError):
            msg.term = 5  # type: ignore[misc]
    assert seen == [3, 4, 3, 4]  # __post_init__ once per build, in both
    for call in (lambda c: c(commit=1), lambda c: c(1), lambda c: c(1, commit=1, other=2)):
        with pytest.raises(TypeError) as plain_error:
            call(plain)
        with pytest.raises(TypeError) as fast_error:
            call(fast)
        assert str(fast_error.value) == str(plain_error.value)
    assert decode(encode(fast(9, commit=1))) == fast(9, commit=1)


def test_a_message_with_a_default_factory_keeps_the_generated_init(scratch_registry):
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Listed:
        items: list = dataclasses.field(default_factory=list)

    generated = Listed.__init__
    message(9008)(Listed)
    assert Listed.__init__ is generated
    assert Listed().items == [] and Listed().items is not Listed().items


def test_every_registered_frozen_raft_and_client_message_has_the_fast_init():
    for cls in (AppendEntries, AppendEntriesResponse, ClientResponse):
        assert "__setattr__" not in cls.__init__.__code__.co_names, cls.__name__


def test_log_entries_their_requests_and_ops_are_never_tracked_by_the_collector():
    # A long log holds a hundred thousand of each: tracked, they made the collector's
    # young collections walk the log's newest entries (core/messages.py).  Each holds a
    # value the collector tracks here, so only gc=False keeps it untracked.
    value = ("a", [])  # tracked: it holds a list
    op = Op(kind="put", key="k", value=value)
    request = ClientRequest(client_id="c", seq=1, op=op, principal=Principal(name="u", via=VIAS[0]))
    config = ClusterConfig(voters=("n1",), learners=())
    assert gc.is_tracked(value) and gc.is_tracked(request.principal) and gc.is_tracked(config)
    for obj in (
        op,
        ServiceOp(kind="put", key="k", value=value),  # the etcd and txn services' op
        request,
        LogEntry(term=1, index=2, kind=CONFIG, data=config),
        Txn(zxid=1 << 32 | 1, index=1, kind="config", data=config),  # ZAB's entry
    ):
        assert not gc.is_tracked(obj), type(obj).__name__
    entry = LogEntry(
        term=1, index=3, kind=COMMAND, data=ClientRequest(client_id="c", seq=2, op=Op(kind="get", key="k"))
    )
    decoded = decode(encode(entry))
    assert decoded == entry
    assert not any(gc.is_tracked(obj) for obj in (decoded, decoded.data, decoded.data.op))
    entries = (entry,)
    assert gc.is_tracked(
        AppendEntries(
            term=1, leader="n1", prev_log_index=0, prev_log_term=0, entries=entries, leader_commit=0
        )
    )


def test_message_field_names_reads_both_kinds_of_message_class_and_nothing_else():
    @dataclasses.dataclass(frozen=True)
    class Empty:
        pass

    assert messages.message_field_names(Empty) == ()  # a message with no field is one
    assert messages.message_field_names(AppendEntriesResponse) == tuple(
        f.name for f in dataclasses.fields(AppendEntriesResponse)
    )
    assert messages.message_field_names(LogEntry) == ("term", "index", "kind", "data")
    for other in (int, tuple, dict, type):
        assert messages.message_field_names(other) is None


def test_a_struct_message_must_be_frozen_and_encodes_as_a_dataclass_would(scratch_registry):
    class Loose(msgspec.Struct, kw_only=True):
        term: int

    with pytest.raises(TypeError, match="Loose must be a dataclass"):
        message(9010)(Loose)

    @message(9011)
    class Point(msgspec.Struct, frozen=True, kw_only=True, gc=False):
        x: int
        label: str = ""
        note: str | None = None
        __appended__ = {"note": "old"}

    @message(9012)
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Twin:
        x: int
        label: str = ""
        note: str | None = dataclasses.field(default=None, metadata=messages.appended("old"))

    point = Point(x=1, label="a")
    assert encode(point)[6:] == encode(Twin(x=1, label="a"))[6:]  # all but the tag
    assert decode(encode(point)) == point
    assert decode(messages._reference_encode(point)) == point
    assert decode(frame(9011, 2, "b")) == Point(x=2, label="b", note="old")  # an older frame
    assert raises_codec(frame(9011, "2", "b")) == "malformed Point: field 'x' has type str"


def test_estimated_size_counts_what_a_message_carries():
    from consensuskit.core.client import ClientRequest, Op
    from consensuskit.core.messages import estimated_size, iter_encode

    request = ClientRequest(client_id="c", seq=1, op=Op(kind="put", key="k", value=b"\0" * 70_000))
    encoded = sum(len(piece) for piece in iter_encode(request))
    assert encoded - 100 <= estimated_size(request) <= encoded + 100
    assert estimated_size("é" * 10) == 40  # up to 4 bytes a character when not ASCII
    assert estimated_size({"a": ["bc", 1, None]}) == 5 + 1 + 5 + 2 + 9 + 1
    deep: list = []
    for _ in range(10_000):  # nesting is bounded, not a RecursionError
        deep = [deep]
    assert estimated_size(deep) < 10_000 * 6
    assert estimated_size(object()) == 9


def test_streamed_marks_only_the_classes_registered_so():
    from consensuskit.core.messages import is_streamed
    from consensuskit.protocols.paxos import multi_messages
    from consensuskit.protocols.paxos.multi_messages import InstallSnapshot, Promise
    from consensuskit.protocols.raft import messages as raft_messages
    from consensuskit.protocols.raft.messages import AppendEntries
    from consensuskit.protocols.zab import messages as zab_messages
    from consensuskit.protocols.zab.messages import NewLeader

    assert is_streamed(object.__new__(InstallSnapshot)) and is_streamed(object.__new__(Promise))
    assert is_streamed(object.__new__(NewLeader))
    # The stored snapshots: the disk WAL encodes them in its sync worker.
    for module in (raft_messages, zab_messages, multi_messages):
        assert is_streamed(object.__new__(module.Snapshot))
    assert not is_streamed(object.__new__(AppendEntries)) and not is_streamed(b"bytes")
