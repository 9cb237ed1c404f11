"""Length-prefixed frames on a byte stream, as a sans-I/O decoder, and messages larger
than one frame carried as a run of fragment frames.

A frame is a 4-byte big-endian payload length followed by that many payload bytes.  The
decoder owns two rules: a length above ``max_frame_bytes`` is refused as soon as its
four header bytes arrive (before any payload is buffered), and bytes left over when the
stream ends are a truncated frame.  Everything else (what a payload means) is the
caller's business.

Fragments (``fragment_frames``, ``Reassembler``): a payload larger than one frame
travels as consecutive frames whose payloads start with ``FRAGMENT_MARK`` (0xC1, the one
byte msgpack never uses, so no encoded message starts with it; an older release refuses
it as an unknown codec version, where it refused the whole message before) and then
``MORE`` or ``LAST``.  The fragments of one message are consecutive on the stream: a
whole payload between them, a malformed fragment header, or a message growing past
``max_message_bytes`` is a FrameError (the connection drops, nothing is delivered).
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">I")
MAX_LENGTH = 2**32 - 1
# The peer transport's frame limit; a larger message travels as fragments.
PEER_MAX_FRAME_BYTES = 64 * 2**20
# The largest message, fragmented over several frames (a snapshot of a large state, a
# ZAB DIFF, a Promise carrying chosen values): what one message may cost in memory.  One
# command must fit in it (server/config.py bounds max_value_bytes).
PEER_MAX_MESSAGE_BYTES = 2**30
FRAGMENT_MARK = 0xC1
MORE = 1
LAST = 0


class FrameError(ValueError):
    """The byte stream is not a valid sequence of frames (remote misbehaviour)."""


def frame(payload: bytes | bytearray) -> bytes:
    """One wire frame carrying ``payload``."""
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a 4-byte length prefix")
    return HEADER.pack(len(payload)) + payload


def fragment_frame(piece: bytes | bytearray | memoryview, last: bool) -> bytes:
    """One fragment frame carrying ``piece`` of a message's encoding."""
    return b"".join((HEADER.pack(len(piece) + 2), bytes((FRAGMENT_MARK, LAST if last else MORE)), piece))


def fragment_frames(payload: bytes, max_frame_bytes: int) -> bytes:
    """``payload`` as consecutive fragment frames of at most ``max_frame_bytes`` each."""
    if max_frame_bytes <= 2:
        raise ValueError("max_frame_bytes must leave room for a fragment's two header bytes")
    piece = max_frame_bytes - 2
    view = memoryview(payload)
    return b"".join(
        fragment_frame(view[start : start + piece], start + piece >= len(payload))
        for start in range(0, len(payload), piece)
    )


class Reassembler:
    """Turns the payloads of one stream back into whole messages' payloads.

    The pieces are copied once, into one buffer that ``decode`` reads in place: a 72 MB
    snapshot costs 72 MB here, not a list of pieces plus their join."""

    __slots__ = ("_buffer", "_open", "max_message_bytes")

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._open = False  # a fragmented message has started and not ended

    def whole(self, payload: bytes) -> bytes | bytearray | None:
        """The whole message's payload that ``payload`` is or completes; None while a
        fragmented message is still arriving.  Raises FrameError on a broken run."""
        if not payload or payload[0] != FRAGMENT_MARK:
            if self._open:
                raise FrameError("a whole message inside a fragmented one")
            return payload
        if len(payload) < 2 or payload[1] not in (MORE, LAST):
            raise FrameError("malformed fragment header")
        if len(self._buffer) + len(payload) - 2 > self.max_message_bytes:
            raise FrameError(f"fragmented message over the limit of {self.max_message_bytes} bytes")
        self._buffer += memoryview(payload)[2:]
        self._open = True
        if payload[1] == MORE:
            return None
        whole, self._buffer, self._open = self._buffer, bytearray(), False
        return whole

    @property
    def pending(self) -> int:
        """Bytes of a fragmented message received so far."""
        return len(self._buffer)


class FrameDecoder:
    """Feed it bytes as they arrive, then take complete payloads with ``next_payload``.

    Taking payloads one at a time lets the caller act on every good frame that precedes
    a bad one in the same read.
    """

    __slots__ = ("_buffer", "_pos", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 0:
            raise ValueError("max_frame_bytes must not be negative")
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._pos = 0  # start of the first unconsumed byte; compacted on the next feed

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def next_payload(self) -> bytes | None:
        """The next complete payload, or None until more bytes arrive.

        Raises FrameError as soon as a length above ``max_frame_bytes`` is seen.
        """
        buffer, pos = self._buffer, self._pos
        if len(buffer) - pos < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(buffer, pos)
        if length > self.max_frame_bytes:
            raise FrameError(f"frame of {length} bytes exceeds the limit of {self.max_frame_bytes}")
        end = pos + HEADER.size + length
        if end > len(buffer):
            return None
        self._pos = end
        return bytes(buffer[pos + HEADER.size : end])

    def payloads(self, data: bytes) -> list[bytes]:
        """Feed ``data`` and take every payload it completed (all or FrameError)."""
        self.feed(data)
        result = []
        while (payload := self.next_payload()) is not None:
            result.append(payload)
        return result

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held so far (non-zero at end of stream = truncated)."""
        return len(self._buffer) - self._pos

    def check_clean_end(self) -> None:
        """Call at end of stream: raises FrameError if it stopped inside a frame."""
        if self.buffered:
            raise FrameError(f"stream ended inside a frame ({self.buffered} bytes of it received)")
