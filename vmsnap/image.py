"""The image format: a raw volume as a plain zstd stream (vmsnap-format(5)).

``zstd -dc IMAGE`` gives back exactly the bytes of the volume.  The stream is a
small skippable header frame (the raw size), then one zstd frame per 4 MiB
chunk, each with its content size and zstd's checksum.  Independent frames let
both directions run on all cores: chunks are compressed and hashed by worker
threads (python-zstandard and hashlib release the GIL) while the main thread
reads and writes in order.  An all-zero chunk is not compressed at all: it
becomes a precomputed frame, and on the way back that frame is recognised and
skipped (a hole in a sparse target).  The digest recorded by the caller is the
chunked sha256 of vmsnap.digest, checked again on the way back with the length.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Generic, Protocol, TypeVar, cast

import zstandard

from vmsnap.digest import CHUNK, ZERO_CHUNK, ZERO_CHUNK_HEX, ChunkDigest, chunk_hex
from vmsnap.errors import IntegrityError, TruncatedError
from vmsnap.frames import (
    HEADER_MAGIC,
    FrameSplitter,
    ImageHeader,
    Readable,
    Streamed,
    Whole,
    header_frame,
    parse_header,
)
from vmsnap.models import DEFAULT_LEVEL

__all__ = ["CHUNK", "DEFAULT_LEVEL", "HEAD_BYTES", "StreamStats", "compress", "decompress"]

HEAD_BYTES = 32  # enough of an image's start for declared_size()
WHOLE_LIMIT = 4 * CHUNK  # larger frames (other writers' images) are streamed
ProgressFn = Callable[[int], None]
T = TypeVar("T")


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def truncate(self, size: int | None = None, /) -> int: ...


class PositionalSink(Sink, Protocol):
    """A sink that can also write at an offset, from any thread: decoded chunks
    are then written by the workers, in parallel, and the main thread only
    keeps the digest in order."""

    def write_at(self, data: bytes, offset: int, /) -> None: ...


@dataclass(frozen=True)
class StreamStats:
    size: int  # raw bytes
    chunk_sha256: str  # of the raw bytes, see vmsnap.digest
    compressed_size: int


@dataclass(frozen=True)
class _Chunk:
    """One chunk on its way: raw ``data`` (None for zeros) or a ``frame``."""

    length: int
    hexdigest: str | None  # of the raw bytes, when the worker computed it
    data: bytes | None = None
    frame: bytes = b""
    written: bool = False  # a worker already wrote it to a positional sink

    @property
    def zero(self) -> bool:
        return self.data is None and not self.frame


def _noop(_n: int) -> None:
    return None


def workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


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


class InOrder(Generic[T]):
    """Work handed to a thread pool, results taken back in submission order,
    with a bounded number in flight (this bounds memory).  A context manager:
    the pool is shut down on leaving it."""

    def __init__(self) -> None:
        n = workers()
        self.pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="vmsnap-zstd")
        self.depth = 2 * n + 2
        self.queue: deque[Future[T] | T] = deque()

    def __enter__(self) -> InOrder[T]:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, fn: Callable[[], T]) -> Iterator[T]:
        self.queue.append(self.pool.submit(fn))
        return self._ready()

    def put(self, item: T) -> Iterator[T]:
        self.queue.append(item)
        return self._ready()

    def _ready(self) -> Iterator[T]:
        while len(self.queue) > self.depth or (self.queue and _done(self.queue[0])):
            yield _result(self.queue.popleft())

    def drain(self) -> Iterator[T]:
        while self.queue:
            yield _result(self.queue.popleft())


def _done(item: object) -> bool:
    return not isinstance(item, Future) or item.done()


def _result(item: Future[T] | T) -> T:
    return item.result() if isinstance(item, Future) else item


# ---------------------------------------------------------------- compress


@functools.cache
def zero_frame() -> bytes:
    """The frame written for an all-zero chunk (and recognised on reading)."""
    cctx = zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=True)
    return cctx.compress(ZERO_CHUNK)


class _Packer:
    """Compresses and hashes chunks; one compressor per worker thread."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.local = threading.local()

    def __call__(self, chunk: bytes | memoryview) -> _Chunk:
        cctx = getattr(self.local, "cctx", None)
        if cctx is None:
            cctx = zstandard.ZstdCompressor(
                level=self.level, write_checksum=True, write_content_size=True
            )
            self.local.cctx = cctx
        return _Chunk(len(chunk), chunk_hex(chunk), frame=cctx.compress(chunk))


def _fd_if(src: Readable, kind: Callable[[int], bool]) -> int | None:
    """The file descriptor under ``src`` when its file type passes ``kind``."""
    fileno = getattr(src, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = int(fileno())
        return fd if kind(os.fstat(fd).st_mode) else None
    except (OSError, ValueError):
        return None


class ReadBuffers:
    """Chunks read into a few reused buffers: a fresh 4 MiB object per read
    costs as much in page faults as the copy itself.  A buffer goes back to the
    pool when its chunk has been written out (chunks leave in the order they
    came in).  In a sparse regular file, a chunk that lies wholly in a hole is
    known to be zeros without reading it (``lseek(SEEK_DATA)``), and comes out
    as None."""

    def __init__(self, src: Readable) -> None:
        self.src = src
        self.free: list[bytearray] = []
        self.busy: deque[bytearray | None] = deque()
        self.offset = 0
        self.drop_fd = _fd_if(src, stat.S_ISBLK)
        self.sparse_fd = _fd_if(src, stat.S_ISREG)
        self.next_data = 0  # no data before this offset (sparse files)

    def __iter__(self) -> Iterator[tuple[bytearray, memoryview] | None]:
        while True:
            if self._in_hole():
                self.busy.append(None)
                self.offset += CHUNK
                cast("io.BufferedIOBase", self.src).seek(self.offset)
                yield None
                continue
            buf = self.free.pop() if self.free else bytearray(CHUNK)
            length = self._fill(buf)
            if not length:
                self.free.append(buf)
                return
            self.busy.append(buf)
            if self.drop_fd is not None:  # a snapshot read once: keep it out of the page cache
                os.posix_fadvise(self.drop_fd, self.offset, length, os.POSIX_FADV_DONTNEED)
            self.offset += length
            with memoryview(buf) as view:
                yield buf, view[:length]

    def _in_hole(self) -> bool:
        """True when the next whole chunk is in a hole of a sparse file."""
        fd, end = self.sparse_fd, self.offset + CHUNK
        if fd is None or end > os.fstat(fd).st_size:
            return False
        if self.next_data <= self.offset:
            try:
                self.next_data = os.lseek(fd, self.offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # no SEEK_DATA here: read everything
                    self.sparse_fd = None
                    return False
                self.next_data = os.fstat(fd).st_size  # only a hole from here on
            finally:  # lseek moved the descriptor under the buffered reader
                cast("io.BufferedIOBase", self.src).seek(self.offset)
        return self.next_data >= end

    def release_oldest(self) -> None:
        buf = self.busy.popleft()
        if buf is not None:
            self.free.append(buf)

    def _fill(self, buf: bytearray) -> int:
        readinto = getattr(self.src, "readinto", None)
        if readinto is None:  # read() only
            data = read_full(self.src, CHUNK)
            buf[: len(data)] = data
            return len(data)
        got = 0
        with memoryview(buf) as view:
            while got < CHUNK and (n := readinto(view[got:])):
                got += n
        return got


def pump(
    reads: ReadBuffers,
    zero: Callable[[], T],
    job: Callable[[memoryview], T],
    emit: Callable[[T], None],
) -> None:
    """Every chunk read, through the pool and back in order to ``emit``: a
    worker runs ``job`` on it, but an all-zero chunk (a hole, or a memcmp:
    zeros are free) gets ``zero()``, from the main thread."""
    with InOrder[T]() as work:
        for read in reads:
            if read is None or (len(read[1]) == CHUNK and read[0] == ZERO_CHUNK):
                done = work.put(zero())
            else:
                done = work.submit(functools.partial(job, read[1]))
            for item in done:
                emit(item)
        for item in work.drain():
            emit(item)


def compress(
    src: Readable,
    dst: BinaryIO,
    *,
    level: int = DEFAULT_LEVEL,
    size: int | None = None,
    progress: ProgressFn = _noop,
) -> StreamStats:
    """Stream ``src`` into ``dst`` as an image, digesting the raw bytes on the way.

    When ``size`` is given it goes into the image header and is checked at the
    end: a source that is shorter or longer is an error.
    """
    pack = _Packer(level)
    digest = ChunkDigest()
    written = dst.write(header_frame(size, CHUNK)) or 0

    reads = ReadBuffers(src)

    def emit(chunk: _Chunk) -> None:
        nonlocal written
        frame = chunk.frame or zero_frame()
        dst.write(frame)
        written += len(frame)
        digest.add_chunk(chunk.hexdigest or ZERO_CHUNK_HEX, chunk.length)
        reads.release_oldest()
        progress(chunk.length)

    pump(reads, lambda: _Chunk(CHUNK, ZERO_CHUNK_HEX), pack, emit)
    if digest.size == 0:  # an empty volume is still one (empty) zstd frame
        written += dst.write(pack(b"").frame) or 0
    check_source_size(digest.size, size)
    return StreamStats(digest.size, digest.hexdigest(), written)


def check_source_size(total: int, size: int | None) -> None:
    if size is not None and total < size:
        raise IntegrityError(f"read {total} bytes where {size} were expected")
    if size is not None and total > size:
        raise IntegrityError(f"source changed size while it was read: {total} bytes, not {size}")


def declared_size(head: bytes) -> int | None:
    """The raw size an image declares in its first bytes: the vmsnap header's,
    or a plain zstd stream's first frame content size (a lower bound)."""
    if len(head) >= 8 and int.from_bytes(head[:4], "little") == HEADER_MAGIC:
        header = parse_header(head[8 : 8 + int.from_bytes(head[4:8], "little")])
        return None if header is None else header.size
    try:
        params = zstandard.get_frame_parameters(head)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"not a zstd image: {exc}") from exc
    size = int(params.content_size)
    return None if size == zstandard.CONTENTSIZE_UNKNOWN else size


# ---------------------------------------------------------------- decompress


class _Unpacker:
    """Decodes whole frames and hashes full chunks; one context per worker.
    With a positional sink it also writes them, at the offset it is given."""

    def __init__(self, sink: PositionalSink | None, *, sparse: bool) -> None:
        self.sink, self.sparse = sink, sparse
        self.local = threading.local()

    def __call__(self, frame: bytes, offset: int) -> _Chunk:
        dctx = getattr(self.local, "dctx", None)
        if dctx is None:
            dctx = self.local.dctx = zstandard.ZstdDecompressor()
        try:
            data = dctx.decompress(frame)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"corrupt image: {exc}") from exc
        if len(data) == CHUNK and data == ZERO_CHUNK:
            return self.zeros(offset)
        hexdigest = chunk_hex(data) if len(data) == CHUNK else None
        if self.sink is None:
            return _Chunk(len(data), hexdigest, data=data)
        self.sink.write_at(data, offset)
        # the main thread digests the bytes of a chunk that is not a whole, aligned one
        whole = hexdigest is not None and offset % CHUNK == 0
        return _Chunk(len(data), hexdigest, data=None if whole else data, written=True)

    def zeros(self, offset: int) -> _Chunk:
        if self.sink is None:
            return _Chunk(CHUNK, ZERO_CHUNK_HEX)
        if not self.sparse:
            self.sink.write_at(ZERO_CHUNK, offset)
        return _Chunk(CHUNK, ZERO_CHUNK_HEX, written=True)


class _Output:
    """Takes decoded chunks in order: keeps the digest and writes what the
    workers did not.  Zero chunks become holes when the target is known to
    read zeros (a new file, a new thin LV)."""

    def __init__(self, dst: Sink, digest: ChunkDigest, *, sparse: bool) -> None:
        self.dst, self.digest, self.sparse = dst, digest, sparse
        self.positional: PositionalSink | None = (
            cast("PositionalSink", dst) if callable(getattr(dst, "write_at", None)) else None
        )
        self.position = 0

    def chunk(self, chunk: _Chunk) -> None:
        if not chunk.written:
            self._write(chunk.data, chunk.length)
        aligned = self.digest.aligned and chunk.length == CHUNK
        if aligned and chunk.hexdigest is not None:
            self.digest.add_chunk(chunk.hexdigest, chunk.length)
        else:
            self.digest.update(chunk.data if chunk.data is not None else bytes(chunk.length))
        self.position += chunk.length

    def raw(self, data: bytes) -> None:
        """Bytes from a streamed frame, any length."""
        zero = data.count(0) == len(data)
        self._write(None if zero else data, len(data))
        self.digest.update(data)
        self.position += len(data)

    def _write(self, data: bytes | None, length: int) -> None:
        """Write ``data`` at the current position; None means zeros."""
        if data is None and self.sparse:
            if self.positional is None:
                self.dst.seek(length, os.SEEK_CUR)
            return
        if data is None:
            data = ZERO_CHUNK[:length] if length < CHUNK else ZERO_CHUNK
        if self.positional is not None:
            self.positional.write_at(data, self.position)
        else:
            self.dst.write(data)

    def finish(self) -> None:
        if self.sparse:
            self.dst.truncate(self.position)  # a final hole still counts


def _stream(frame: Streamed, out: _Output) -> None:
    dobj = zstandard.ZstdDecompressor().decompressobj()
    for piece in frame.pieces:  # at most one block each: bounded output
        if data := dobj.decompress(piece):
            out.raw(data)


def decompress(
    src: Readable,
    dst: Sink,
    *,
    expected_size: int | None = None,
    expected_digest: str | None = None,
    sparse: bool = False,
    progress: ProgressFn = _noop,
) -> StreamStats:
    """Decode ``src`` into ``dst``; check framing, zstd checksums, length and
    digest.  ``sparse`` is only for a target known to read zeros.  A sink with
    ``write_at`` (PositionalSink) is written by the worker threads."""
    frames = FrameSplitter(src, whole_limit=WHOLE_LIMIT)
    digest = ChunkDigest()
    out = _Output(dst, digest, sparse=sparse)
    unpack = _Unpacker(out.positional, sparse=sparse)
    offset = 0  # where the next frame's bytes go

    def emit(chunk: _Chunk) -> None:
        out.chunk(chunk)
        progress(chunk.length)

    try:
        with InOrder[_Chunk]() as work:
            for frame in frames:
                if isinstance(frame, Whole):
                    if frame.data == zero_frame():
                        task = functools.partial(unpack.zeros, offset)
                    else:
                        task = functools.partial(unpack, frame.data, offset)
                    offset += frame.content_size
                    done = work.submit(task)
                else:
                    done = work.drain()  # everything before it goes first
                for chunk in done:
                    emit(chunk)
                if isinstance(frame, Streamed):
                    before = out.position
                    _stream(frame, out)
                    offset = out.position
                    progress(out.position - before)
            for chunk in work.drain():
                emit(chunk)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"corrupt image: {exc}") from exc
    out.finish()
    stats = StreamStats(digest.size, digest.hexdigest(), frames.consumed)
    check(stats, expected_size=expected_size, expected_digest=expected_digest)
    _check_header(frames.header, digest.size)
    return stats


def _check_header(header: ImageHeader | None, size: int) -> None:
    """A vmsnap header must agree with what the frames decoded to."""
    if header is None:
        return
    if header.chunk != CHUNK:
        raise IntegrityError(f"image header: chunk size {header.chunk}, expected {CHUNK}")
    if header.size is not None and header.size != size:
        raise IntegrityError(f"image header declares {header.size} bytes, decoded {size}")


def check(stats: StreamStats, *, expected_size: int | None, expected_digest: str | None) -> None:
    if expected_size is not None and stats.size != expected_size:
        short = stats.size < expected_size  # frames missing at the end: cut short
        error, why = (TruncatedError, "truncated?") if short else (IntegrityError, "too long")
        raise error(f"image decodes to {stats.size} bytes, {expected_size} expected ({why})")
    if expected_digest is not None and stats.chunk_sha256 != expected_digest:
        raise IntegrityError(f"chunk sha256 mismatch: {stats.chunk_sha256} != {expected_digest}")


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
