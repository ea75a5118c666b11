"""Split a zstd stream into its frames, proving on the way that it is complete.

Decoders stop quietly at the end of their input, so an image cut short (even in
the middle of a block or of the final checksum) would decode without an error.
The splitter reads only frame and block headers (RFC 8878, section 3.1) and
knows at every point whether the stream ends on a frame boundary.

It hands out each frame whole when its header declares a content size small
enough to decode in one call (so frames can be decoded in parallel), and
otherwise as a series of pieces no larger than one block, to be fed to a
streaming decoder.  Skippable frames are passed over; the first one may be the
vmsnap image header (see vmsnap-format(5)).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from vmsnap.errors import IntegrityError, TruncatedError

ZSTD_MAGIC = 0xFD2FB528
SKIPPABLE_MASK = 0xFFFFFFF0
SKIPPABLE_MAGIC = 0x184D2A50
HEADER_MAGIC = 0x184D2A56  # the vmsnap image header: a skippable frame
HEADER_ID = b"vmsnap01"
HEADER_FORMAT = "<8sQI"  # id, raw size (UNKNOWN_SIZE if unknown), chunk size
UNKNOWN_SIZE = (1 << 64) - 1
_FCS_BYTES = (0, 2, 4, 8)
_DICT_BYTES = (0, 1, 2, 4)
_READ_SIZE = 1 << 20
_TRUNCATED = "image is truncated: it ends inside a zstd frame"


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ImageHeader:
    size: int | None  # raw bytes of the volume, when the writer knew it
    chunk: int  # raw bytes per frame


def header_frame(size: int | None, chunk: int) -> bytes:
    """The skippable frame that opens a vmsnap image."""
    payload = struct.pack(HEADER_FORMAT, HEADER_ID, UNKNOWN_SIZE if size is None else size, chunk)
    return struct.pack("<II", HEADER_MAGIC, len(payload)) + payload


def parse_header(payload: bytes) -> ImageHeader | None:
    if len(payload) != struct.calcsize(HEADER_FORMAT):
        return None
    ident, size, chunk = struct.unpack(HEADER_FORMAT, payload)
    if ident != HEADER_ID:
        return None
    return ImageHeader(None if size == UNKNOWN_SIZE else size, chunk)


@dataclass(frozen=True)
class Whole:
    """A complete frame, small enough to decode in one call."""

    data: bytes
    content_size: int


@dataclass(frozen=True)
class Streamed:
    """A frame too large (or of unknown size) to hold: its bytes in pieces,
    each at most one block.  Consume them before asking for the next frame."""

    pieces: Iterator[bytes]


@dataclass(frozen=True)
class _FrameHeader:
    length: int  # bytes, magic included
    checksum: bool
    content_size: int | None


class _Input:
    """A read buffer with a cursor (``pos``); what lies before it may be dropped."""

    def __init__(self, src: Readable) -> None:
        self.src = src
        self.buf = bytearray()
        self.pos = 0
        self.consumed = 0  # bytes read from src

    def available(self, n: int) -> bool:
        """True when ``n`` bytes follow the cursor (reading more as needed)."""
        if len(self.buf) - self.pos >= n:
            return True
        while len(self.buf) - self.pos < n:
            more = self.src.read(max(_READ_SIZE, n - (len(self.buf) - self.pos)))
            if not more:
                return False
            self.buf += more
            self.consumed += len(more)
        return True

    def need(self, n: int) -> None:
        if not self.available(n):
            raise TruncatedError(_TRUNCATED)

    def peek(self, start: int, end: int) -> bytes:
        """Bytes ``start:end`` counted from the cursor (one copy)."""
        self.need(end)
        with memoryview(self.buf) as view:
            return bytes(view[self.pos + start : self.pos + end])

    def take(self, n: int) -> bytes:
        data = self.peek(0, n)
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        """Pass over ``n`` bytes without holding them all."""
        while n:
            step = min(n, _READ_SIZE)
            self.need(step)
            self.pos += step
            self.drop()
            n -= step

    def drop(self) -> None:
        """Forget what lies before the cursor."""
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0


class FrameSplitter:
    """Iterate over the frames of ``src``; :attr:`consumed` counts bytes read."""

    def __init__(self, src: Readable, *, whole_limit: int) -> None:
        self._in = _Input(src)
        self._whole_limit = whole_limit
        self.frames = 0  # zstd frames, skippable ones not counted
        self.header: ImageHeader | None = None

    @property
    def consumed(self) -> int:
        return self._in.consumed

    def __iter__(self) -> Iterator[Whole | Streamed]:
        first = True
        while True:
            self._in.drop()
            if not self._in.available(1):
                break
            magic = int.from_bytes(self._in.peek(0, 4), "little")
            if magic == ZSTD_MAGIC:
                frame = self._frame()
                yield frame
                if isinstance(frame, Streamed):  # whatever the consumer left
                    for _ in frame.pieces:
                        pass
                self.frames += 1
            elif magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC:
                self._skippable(magic, first=first)
            else:
                raise IntegrityError(f"not a zstd frame (magic {magic:#010x})")
            first = False
        if self.frames == 0:
            raise TruncatedError("image is empty: no zstd frame")

    def _skippable(self, magic: int, *, first: bool) -> None:
        size = int.from_bytes(self._in.take(8)[4:], "little")
        if first and magic == HEADER_MAGIC:  # ours: it must be whole and sound
            self.header = parse_header(self._in.take(size)) if size <= 64 else None
            if self.header is None:
                raise IntegrityError("the image header is damaged")
        else:
            self._in.skip(size)

    def _frame(self) -> Whole | Streamed:
        head = self._frame_header()
        size = head.content_size
        if size is not None and size <= self._whole_limit:
            return Whole(self._whole(head, bound=size + (size >> 7) + 65536), size)
        return Streamed(self._pieces(head))

    def _frame_header(self) -> _FrameHeader:
        descriptor = self._in.peek(4, 5)[0]
        if descriptor & 0x08:
            raise IntegrityError("zstd frame header has its reserved bit set")
        single_segment = bool(descriptor & 0x20)
        fcs = _FCS_BYTES[descriptor >> 6]
        if single_segment and fcs == 0:
            fcs = 1
        skip = 5 + (0 if single_segment else 1) + _DICT_BYTES[descriptor & 0x03]
        field = self._in.peek(skip, skip + fcs)
        content = int.from_bytes(field, "little") + (256 if fcs == 2 else 0) if fcs else None
        return _FrameHeader(skip + fcs, bool(descriptor & 0x04), content)

    def _block(self, at: int) -> tuple[int, bool]:
        """The block at offset ``at`` past the cursor: (offset past it, last?)."""
        header = int.from_bytes(self._in.peek(at, at + 3), "little")
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        if kind == 3:
            raise IntegrityError("zstd block of reserved type")
        end = at + 3 + (1 if kind == 1 else size)  # an RLE block holds one byte
        self._in.need(end)
        return end, bool(last)

    def _whole(self, head: _FrameHeader, *, bound: int) -> bytes:
        end, last = head.length, False
        while not last:
            end, last = self._block(end)
            if end > bound:
                raise IntegrityError("zstd frame larger than its content size allows")
        return self._in.take(end + (4 if head.checksum else 0))

    def _pieces(self, head: _FrameHeader) -> Iterator[bytes]:
        yield self._in.take(head.length)
        last = False
        while not last:
            self._in.drop()
            end, last = self._block(0)
            yield self._in.take(end)
        if head.checksum:
            yield self._in.take(4)
