"""The volume digest: sha256 over the sha256 of each 4 MiB chunk.

A whole-volume sha256 runs on one core (about 1.8 GB/s here) and must see every
zero byte; this digest hashes chunks on all cores and knows the digest of an
all-zero chunk in advance, so zero runs cost nothing.  It is reproducible with
stock tools::

    split -b 4194304 --filter=sha256sum VOLUME | cut -c1-64 | sha256sum

that is: the sha256 of the lines ``<hex sha256 of chunk i>\\n``, chunk by chunk,
the last chunk possibly shorter.  An empty volume has the sha256 of nothing.
"""

from __future__ import annotations

import hashlib

CHUNK = 4 << 20
ZERO_CHUNK = bytes(CHUNK)
ZERO_CHUNK_HEX = hashlib.sha256(ZERO_CHUNK).hexdigest()


def chunk_hex(data: bytes | memoryview) -> str:
    """The hex sha256 of one chunk (runs without the GIL: call it from workers)."""
    return hashlib.sha256(data).hexdigest()


class ChunkDigest:
    """Accumulates the digest from whole-chunk digests or from raw bytes."""

    def __init__(self) -> None:
        self._top = hashlib.sha256()
        self._part = hashlib.sha256()
        self._part_len = 0
        self.size = 0

    @property
    def aligned(self) -> bool:
        """True when the bytes so far end on a chunk boundary."""
        return self._part_len == 0

    def add_chunk(self, hexdigest: str, length: int) -> None:
        """A whole chunk whose digest is already known (requires :attr:`aligned`;
        only the volume's last chunk may be shorter than CHUNK)."""
        if not self.aligned:
            raise ValueError("add_chunk on an unaligned digest")
        self._top.update(hexdigest.encode() + b"\n")
        self.size += length
        if length < CHUNK:
            self._part_len = -1  # nothing may follow a short chunk

    def update(self, data: bytes | memoryview) -> None:
        """Raw bytes, any length: cut into chunks here."""
        view = memoryview(data)
        while view:
            if self._part_len < 0:
                raise ValueError("bytes after a short chunk")
            take = min(CHUNK - self._part_len, len(view))
            self._part.update(view[:take])
            self._part_len += take
            self.size += take
            view = view[take:]
            if self._part_len == CHUNK:
                self._top.update(self._part.hexdigest().encode() + b"\n")
                self._part = hashlib.sha256()
                self._part_len = 0

    def hexdigest(self) -> str:
        top = self._top.copy()
        if self._part_len > 0:
            top.update(self._part.hexdigest().encode() + b"\n")
        return top.hexdigest()
