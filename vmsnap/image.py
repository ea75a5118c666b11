"""The image format: a raw volume as a plain zstd stream.

``zstd -dc IMAGE`` gives back exactly the bytes of the volume.  Frames carry
zstd's content checksum and, when the size is known, the content size; the
sha256 of the raw bytes and their length are computed on the way and recorded
by the caller (the backup manifest), and checked again on the way back.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, BinaryIO, Protocol, cast

import zstandard

from vmsnap.digest import ChunkDigest
from vmsnap.errors import IntegrityError, TruncatedError
from vmsnap.frames import FrameWalker

CHUNK = 4 << 20
DEFAULT_LEVEL = 3
ProgressFn = Callable[[int], None]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def truncate(self, size: int | None = None, /) -> int: ...


@dataclass(frozen=True)
class StreamStats:
    size: int  # raw bytes
    chunk_sha256: str  # of the raw bytes, see vmsnap.digest
    compressed_size: int


class _CountingWriter:
    """Counts what passes through to ``target`` (the compressed size)."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.count = 0

    def write(self, data: bytes) -> int:
        written = self.target.write(data)
        self.count += len(data)
        return written if written is not None else len(data)

    def flush(self) -> None:
        self.target.flush()


def _noop(_n: int) -> None:
    return None


def read_full(src: Readable, size: int) -> bytes:
    """Read up to ``size`` bytes, retrying short reads (pipes, raw files)."""
    data = src.read(size)
    if not data or len(data) == size:
        return data or b""
    parts = [data]
    got = len(data)
    while got < size:
        more = src.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def compress(
    src: Readable,
    dst: BinaryIO,
    *,
    level: int = DEFAULT_LEVEL,
    size: int | None = None,
    progress: ProgressFn = _noop,
) -> StreamStats:
    """Stream ``src`` into ``dst`` as zstd, hashing the raw bytes on the way.

    Compression runs on all cores (python-zstandard releases the GIL).  When
    ``size`` is given it goes into the frame header and is checked at the end.
    """
    cctx = zstandard.ZstdCompressor(
        level=level, threads=-1, write_checksum=True, write_content_size=True
    )
    counter = _CountingWriter(dst)
    hasher = ChunkDigest()
    total = 0
    sink = cast("IO[bytes]", counter)  # it only needs write() and flush()
    writer = cctx.stream_writer(sink, size=-1 if size is None else size, closefd=False)
    # No with-block: on an error, closing the frame would raise "Src size is
    # incorrect" and hide the real cause; an unfinished frame is simply dropped.
    try:
        while chunk := read_full(src, CHUNK):
            hasher.update(chunk)
            writer.write(chunk)
            total += len(chunk)
            progress(len(chunk))
        if size is not None and total != size:
            raise IntegrityError(f"read {total} bytes where {size} were expected")
        writer.flush(zstandard.FLUSH_FRAME)
    except zstandard.ZstdError as exc:  # the source grew past its declared size
        raise IntegrityError(f"source changed size while it was read: {exc}") from exc
    return StreamStats(size=total, chunk_sha256=hasher.hexdigest(), compressed_size=counter.count)


def declared_size(head: bytes) -> int | None:
    """The content size in the first frame's header, if written there."""
    try:
        params = zstandard.get_frame_parameters(head)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"not a zstd image: {exc}") from exc
    size = int(params.content_size)
    return None if size == zstandard.CONTENTSIZE_UNKNOWN else size


class _ZeroSkipper:
    """Writes to a fresh regular file, seeking over all-zero chunks (sparse)."""

    def __init__(self, target: Sink) -> None:
        self.target = target
        self.position = 0

    def write(self, data: bytes) -> int:
        if data.count(0) == len(data):
            self.target.seek(len(data), os.SEEK_CUR)
        else:
            self.target.write(data)
        self.position += len(data)
        return len(data)

    def finish(self) -> None:
        self.target.truncate(self.position)


def decompress(
    src: Readable,
    dst: Sink,
    *,
    expected_size: int | None = None,
    expected_digest: str | None = None,
    sparse: bool = False,
    progress: ProgressFn = _noop,
) -> StreamStats:
    """Decode ``src`` into ``dst``; check zstd checksums, length and sha256.

    ``sparse`` is only for a target known to read zeros (a new file): zero
    chunks are skipped rather than written.
    """
    counter = _CountingReader(src)
    reader = zstandard.ZstdDecompressor().stream_reader(
        cast("IO[bytes]", counter),  # it only needs read()
        read_across_frames=True,
        closefd=False,
    )
    sink = _ZeroSkipper(dst) if sparse else None
    hasher = ChunkDigest()
    total = 0
    try:
        while chunk := read_full(reader, CHUNK):
            hasher.update(chunk)
            (sink or dst).write(chunk)
            total += len(chunk)
            progress(len(chunk))
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"corrupt image: {exc}") from exc
    if sink is not None:
        sink.finish()
    while counter.read(CHUNK):  # anything the decoder left unread is still walked
        pass
    counter.walker.finish()
    stats = StreamStats(size=total, chunk_sha256=hasher.hexdigest(), compressed_size=counter.count)
    check(stats, expected_size=expected_size, expected_digest=expected_digest)
    return stats


def check(stats: StreamStats, *, expected_size: int | None, expected_digest: str | None) -> None:
    if expected_size is not None and stats.size != expected_size:
        short = stats.size < expected_size  # frames missing at the end: cut short
        error = TruncatedError if short else IntegrityError
        raise error(f"image decodes to {stats.size} bytes, {expected_size} expected (truncated?)")
    if expected_digest is not None and stats.chunk_sha256 != expected_digest:
        raise IntegrityError(f"chunk sha256 mismatch: {stats.chunk_sha256} != {expected_digest}")


class _CountingReader:
    """Counts compressed bytes read and walks their framing (see frames.py)."""

    def __init__(self, source: Readable) -> None:
        self.source = source
        self.count = 0
        self.walker = FrameWalker()

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.walker.feed(data)
        self.count += len(data)
        return data


def device_size(fd: int) -> int | None:
    """Size in bytes of a block device or regular file; None for pipes."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return os.fstat(fd).st_size
    if stat.S_ISBLK(mode):
        end = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        return end
    return None
