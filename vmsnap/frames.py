"""Walk the framing of a zstd stream to prove it is complete.

Decoders stop quietly at the end of their input, so an image cut short (even in
the middle of a block or of the final checksum) would decode without an error.
This walker reads only the frame and block headers (RFC 8878, section 3.1) as
the compressed bytes go by, and knows at every point whether the stream ends on
a frame boundary.
"""

from __future__ import annotations

from vmsnap.errors import IntegrityError, TruncatedError

ZSTD_MAGIC = 0xFD2FB528
SKIPPABLE_MASK = 0xFFFFFFF0
SKIPPABLE_MAGIC = 0x184D2A50
_FCS_BYTES = (0, 2, 4, 8)
_DICT_BYTES = (0, 1, 2, 4)


class FrameWalker:
    """Feed compressed bytes with :meth:`feed`; call :meth:`finish` at the end."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skip = 0  # bytes of payload to pass over before the next header
        self._state = "magic"
        self._checksum = False
        self.frames = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = self._need()
            take = min(need - len(self._buf), len(view))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == need:
                self._advance(bytes(self._buf))
                self._buf.clear()

    def _need(self) -> int:
        if self._state == "magic":
            return 4
        if self._state == "header":
            return 1
        if self._state == "header_rest":
            return self._rest
        if self._state == "skippable_size":
            return 4
        if self._state == "block":
            return 3
        return 4  # checksum

    def _advance(self, chunk: bytes) -> None:
        handler = getattr(self, f"_on_{self._state}")
        handler(chunk)

    def _on_magic(self, chunk: bytes) -> None:
        magic = int.from_bytes(chunk, "little")
        if magic == ZSTD_MAGIC:
            self._state = "header"
        elif magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC:
            self._state = "skippable_size"
        else:
            raise IntegrityError(f"not a zstd frame (magic {magic:#010x})")

    def _on_skippable_size(self, chunk: bytes) -> None:
        self._skip = int.from_bytes(chunk, "little")
        self._end_frame()

    def _on_header(self, chunk: bytes) -> None:
        descriptor = chunk[0]
        single_segment = bool(descriptor & 0x20)
        if descriptor & 0x08:
            raise IntegrityError("zstd frame header has its reserved bit set")
        self._checksum = bool(descriptor & 0x04)
        fcs = _FCS_BYTES[descriptor >> 6]
        if single_segment and fcs == 0:
            fcs = 1
        self._rest = (0 if single_segment else 1) + _DICT_BYTES[descriptor & 0x03] + fcs
        self._state = "header_rest" if self._rest else "block"

    def _on_header_rest(self, _chunk: bytes) -> None:
        self._state = "block"

    def _on_block(self, chunk: bytes) -> None:
        header = int.from_bytes(chunk, "little")
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        if kind == 3:
            raise IntegrityError("zstd block of reserved type")
        self._skip = 1 if kind == 1 else size  # an RLE block holds one byte
        if last:
            self._state = "checksum" if self._checksum else "magic"
            if not self._checksum:
                self.frames += 1

    def _on_checksum(self, _chunk: bytes) -> None:
        self._end_frame()

    def _end_frame(self) -> None:
        self.frames += 1
        self._state = "magic"

    def finish(self) -> None:
        """Raise unless the stream ended exactly after a complete frame."""
        if self._skip or self._buf or self._state != "magic":
            raise TruncatedError("image is truncated: it ends inside a zstd frame")
        if self.frames == 0:
            raise TruncatedError("image is empty: no zstd frame")
