"""The leader's source of snapshot chunks for one follower (Raft §7, Figure 13).

Rules this module owns:
- A chunk is ``encode(snapshot)[offset:offset + n]``, computed from ``iter_encode`` as
  it goes: the reader never holds more than about one requested chunk plus one piece of
  the encoding, however large the snapshot (a 100 MB encoding is never built whole).
- Reads normally move forward.  A read behind what the reader still holds (the follower
  lost a chunk and asks again from an earlier offset) starts the encoding over: it is
  deterministic, so the bytes are the same.
- Pure computation (no I/O, no clock, no randomness): protocol traces stay reproducible.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from consensuskit.core.messages import iter_encode
from consensuskit.protocols.raft.messages import Snapshot


class SnapshotReader:
    """Reads the encoding of ``snapshot`` by offset, without keeping it whole."""

    __slots__ = ("_held", "_held_bytes", "_pieces", "_start", "size", "snapshot")

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        # The encoding's length, once the pieces have run out.
        self.size: int | None = None
        self._restart()

    @property
    def last_index(self) -> int:
        return self.snapshot.last_index

    def _restart(self) -> None:
        self._pieces: Iterator[bytes] | None = iter_encode(self.snapshot)
        self._held: deque[bytes] = deque()  # consecutive pieces of the encoding
        self._held_bytes = 0
        self._start = 0  # offset of the first held byte

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes of the encoding from ``offset``: fewer only at its end, and
        b"" from the end on.  ``read(offset, n + 1)`` tells whether more than ``n`` remain."""
        if offset < 0 or n < 0:
            raise ValueError(f"offset and n must not be negative, got {offset}, {n}")
        if self.size is not None and offset >= self.size:
            return b""
        if offset < self._start:
            self._restart()
        held = self._held
        while True:
            # Let go of pieces wholly before ``offset``: nothing behind it is read again
            # unless a chunk is lost, and then the encoding starts over.
            while held and self._start + len(held[0]) <= offset:
                self._start += len(held[0])
                self._held_bytes -= len(held[0])
                held.popleft()
            if self._start + self._held_bytes >= offset + n or self._pieces is None:
                break
            piece = next(self._pieces, None)
            if piece is None:
                self._pieces = None
                self.size = self._start + self._held_bytes
            else:
                held.append(piece)
                self._held_bytes += len(piece)
        if not held:
            return b""
        # Views, so the chunk is copied once, by the join.
        parts: list[memoryview] = []
        skip, want = offset - self._start, n
        for piece in held:
            if want <= 0:
                break
            part = memoryview(piece)[skip : skip + want]
            parts.append(part)
            want -= len(part)
            skip = 0
        return b"".join(parts)
