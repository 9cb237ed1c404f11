"""Length-prefixed framing: split anywhere, refuse oversized lengths early, spot truncation."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensuskit.server.framing import (
    FRAGMENT_MARK,
    LAST,
    MORE,
    FrameDecoder,
    FrameError,
    Reassembler,
    fragment_frames,
    frame,
)


def feed_bytewise(decoder: FrameDecoder, data: bytes) -> list[bytes]:
    """Feed one byte at a time (h11's ``tr()`` style): every split point is exercised."""
    out: list[bytes] = []
    for i in range(len(data)):
        out.extend(decoder.payloads(data[i : i + 1]))
    return out


def test_frame_is_big_endian_length_then_payload():
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(b"") == b"\x00\x00\x00\x00"
    assert frame(b"x" * 258)[:4] == b"\x00\x00\x01\x02"


def test_frames_fed_one_byte_at_a_time_come_out_whole_and_in_order():
    payloads = [b"first", b"", b"x" * 1000, b"\x00\x01\x02"]
    stream = b"".join(frame(p) for p in payloads)
    decoder = FrameDecoder(max_frame_bytes=2000)
    assert feed_bytewise(decoder, stream) == payloads
    assert decoder.buffered == 0
    decoder.check_clean_end()


def test_many_frames_in_one_chunk_are_all_returned():
    decoder = FrameDecoder(max_frame_bytes=10)
    assert decoder.payloads(frame(b"a") + frame(b"bb") + frame(b"ccc")[:5]) == [b"a", b"bb"]
    assert decoder.buffered == 5
    assert decoder.payloads(b"cc") == [b"ccc"]


def test_oversized_length_is_refused_as_soon_as_the_header_arrives():
    decoder = FrameDecoder(max_frame_bytes=100)
    assert decoder.payloads(b"\x00\x00") == []
    with pytest.raises(FrameError, match="101 bytes exceeds the limit of 100"):
        decoder.payloads(b"\x00\x65")  # no payload byte has been sent yet


def test_frame_of_exactly_the_limit_is_accepted():
    decoder = FrameDecoder(max_frame_bytes=100)
    assert decoder.payloads(frame(b"y" * 100)) == [b"y" * 100]


def test_good_frames_before_a_bad_header_can_be_taken_one_at_a_time():
    decoder = FrameDecoder(max_frame_bytes=4)
    decoder.feed(frame(b"ok") + b"\xff\xff\xff\xff")
    assert decoder.next_payload() == b"ok"
    with pytest.raises(FrameError):
        decoder.next_payload()


def test_stream_ending_inside_a_frame_is_truncation():
    decoder = FrameDecoder(max_frame_bytes=100)
    decoder.payloads(frame(b"0123456789")[:7])
    with pytest.raises(FrameError, match="stream ended inside a frame \\(7 bytes"):
        decoder.check_clean_end()


def test_stream_ending_inside_a_header_is_truncation():
    decoder = FrameDecoder(max_frame_bytes=100)
    decoder.payloads(b"\x00\x00")
    with pytest.raises(FrameError):
        decoder.check_clean_end()


def test_negative_limit_is_misuse():
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_bytes=-1)


@given(
    payloads=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_any_split_of_a_frame_stream_yields_the_same_payloads(payloads, cuts):
    stream = b"".join(frame(p) for p in payloads)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    decoder = FrameDecoder(max_frame_bytes=300)
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out.extend(decoder.payloads(stream[start:end]))
    assert out == payloads
    decoder.check_clean_end()


# ---------------------------------------------------------------------- fragments
def reassemble(stream: bytes, max_frame_bytes: int, max_message_bytes: int = 10**9) -> list[bytes]:
    decoder, reassembler = FrameDecoder(max_frame_bytes), Reassembler(max_message_bytes)
    out = []
    for payload in decoder.payloads(stream):
        whole = reassembler.whole(payload)
        if whole is not None:
            out.append(whole)
    decoder.check_clean_end()
    assert reassembler.pending == 0
    return out


def test_a_payload_over_the_frame_limit_becomes_marked_fragments():
    stream = fragment_frames(b"abcdefgh", 5)  # three bytes of payload per fragment
    assert stream == (
        frame(bytes([FRAGMENT_MARK, MORE]) + b"abc")
        + frame(bytes([FRAGMENT_MARK, MORE]) + b"def")
        + frame(bytes([FRAGMENT_MARK, LAST]) + b"gh")
    )
    assert reassemble(stream, 5) == [b"abcdefgh"]


@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=300), st.booleans()), max_size=8),
    st.integers(min_value=3, max_value=64),
)
def test_whole_and_fragmented_messages_come_out_whole_in_order(messages, max_frame_bytes):
    """Codec payloads never start with FRAGMENT_MARK (msgpack never uses 0xC1; ours start
    with the codec version), so the generated ones are kept clear of it."""
    payloads = [(b"\x02" + body, split) for body, split in messages]
    stream = b"".join(
        fragment_frames(p, max_frame_bytes) if split or len(p) > max_frame_bytes else frame(p)
        for p, split in payloads
    )
    assert reassemble(stream, max(max_frame_bytes, 301)) == [p for p, _ in payloads]


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (
            frame(bytes([FRAGMENT_MARK, MORE]) + b"ab") + frame(b"\x02whole"),
            "a whole message inside a fragmented one",
        ),
        (frame(bytes([FRAGMENT_MARK])), "malformed fragment header"),
        (frame(bytes([FRAGMENT_MARK, 7]) + b"ab"), "malformed fragment header"),
        (fragment_frames(b"x" * 50, 12), "fragmented message over the limit of 40 bytes"),
    ],
)
def test_a_broken_run_of_fragments_is_a_frame_error(stream, error):
    with pytest.raises(FrameError, match=error):
        reassemble(stream, 100, max_message_bytes=40)


def test_a_codec_payload_never_starts_with_the_fragment_mark():
    from consensuskit.core.messages import CODEC_VERSION

    assert CODEC_VERSION != FRAGMENT_MARK
    with pytest.raises(ValueError, match="two header bytes"):
        fragment_frames(b"abc", 2)
