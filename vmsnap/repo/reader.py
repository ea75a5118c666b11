"""Reading a disk back: its chunk frames, in order, each one checked.

A worker fetches each chunk and, unless told not to, decodes it and checks
its length and its digest against its id (the fixed zero frame is known
without decoding).  What comes out is the disk's image in format 2's shape:
:func:`image_stream` puts the image header in front (the raw size, so that
``image load`` checks the target's room before writing), and the frames
need no recompression: ``zstd -dc`` takes them as they are, and so does
vmsnap.image.decompress (restore, clone) through :class:`StreamReader`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import zstandard

from vmsnap.digest import CHUNK, chunk_hex
from vmsnap.errors import IntegrityError, MissingChunkError
from vmsnap.frames import header_frame
from vmsnap.image import InOrder, zero_frame
from vmsnap.repo.backend import ObjectMissing
from vmsnap.repo.layout import chunk_name
from vmsnap.repo.manifest import RepoDisk
from vmsnap.repo.repository import Repository


@dataclass(frozen=True)
class _Frame:
    frame: bytes
    length: int  # raw bytes


class Fetcher:
    def __init__(self, repo: Repository, where: str, *, verify: bool) -> None:
        self.repo, self.where, self.verify = repo, where, verify
        self.zero_id = repo.naming.chunk_id(chunk_hex(bytes(CHUNK)))

    def __call__(self, chunk_id: str, length: int) -> _Frame:
        try:
            frame = self.repo.backend.get(chunk_name(chunk_id))
        except ObjectMissing:
            raise MissingChunkError(f"{self.where}: chunk {chunk_id} is missing") from None
        if self.verify and not self._is_zero(chunk_id, frame, length):
            self._check(chunk_id, frame, length)
        return _Frame(frame, length)

    def _is_zero(self, chunk_id: str, frame: bytes, length: int) -> bool:
        return length == CHUNK and chunk_id == self.zero_id and frame == zero_frame()

    def _check(self, chunk_id: str, frame: bytes, length: int) -> None:
        bad = f"{self.where}: chunk {chunk_id} is corrupt"
        try:
            data = zstandard.ZstdDecompressor().decompress(frame, max_output_size=CHUNK)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{bad}: {exc}") from None
        if len(data) != length:
            raise IntegrityError(f"{bad}: {len(data)} bytes, {length} expected")
        if self.repo.naming.chunk_id(chunk_hex(data)) != chunk_id:
            raise IntegrityError(f"{bad}: its bytes do not match its digest")


def chunk_lengths(disk: RepoDisk) -> Iterator[int]:
    """The raw length of each of the disk's chunks: all CHUNK but the last."""
    for i in range(len(disk.chunks)):
        yield min(CHUNK, disk.size - i * CHUNK)


def frames(
    repo: Repository, disk: RepoDisk, *, where: str, verify: bool = True
) -> Iterator[tuple[bytes, int]]:
    """The disk's frames, in order, with the raw length of each; ``where``
    (the backup) names the backup in every error."""
    fetch = Fetcher(repo, where, verify=verify)
    with InOrder[_Frame]() as work:
        for chunk_id, length in zip(disk.chunks, chunk_lengths(disk), strict=True):
            for done in work.submit(functools.partial(fetch, chunk_id, length)):
                yield done.frame, done.length
        for done in work.drain():
            yield done.frame, done.length


@functools.cache
def empty_frame() -> bytes:
    """An empty volume is still one (empty) zstd frame, as in format 2."""
    cctx = zstandard.ZstdCompressor(write_checksum=True, write_content_size=True)
    return bytes(cctx.compress(b""))


def image_stream(
    repo: Repository, disk: RepoDisk, *, where: str, verify: bool = True
) -> Iterator[tuple[bytes, int]]:
    """The disk as a format 2 image: header frame, chunk frames (raw lengths
    alongside; the header counts 0)."""
    yield header_frame(disk.size, CHUNK), 0
    if not disk.chunks:
        yield empty_frame(), 0
    yield from frames(repo, disk, where=where, verify=verify)


class StreamReader:
    """Pieces of bytes as a ``read(n)`` file (vmsnap.frames.Readable), for
    vmsnap.image.decompress."""

    def __init__(self, pieces: Iterator[tuple[bytes, int]]) -> None:
        self.pieces = pieces
        self.current = b""
        self.pos = 0

    def read(self, size: int = -1, /) -> bytes:
        parts: list[bytes] = []
        want = size
        while want != 0:
            if self.pos >= len(self.current):
                piece = next(self.pieces, None)
                if piece is None:
                    break
                self.current, self.pos = piece[0], 0
                continue
            left = len(self.current) - self.pos
            take = left if want < 0 else min(want, left)
            parts.append(self.current[self.pos : self.pos + take])
            self.pos += take
            want = want - take if want > 0 else want
        return b"".join(parts)
