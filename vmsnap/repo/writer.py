"""Storing a volume: read 4 MiB chunks, hash each, write only the new ones.

The read side is the image engine's (vmsnap.image.ReadBuffers: reused buffers,
holes of sparse files unread, the page cache spared); the workers are its
in-order pool.  A worker hashes its chunk, and when neither the index nor the
repository holds it, compresses it and puts it; a held chunk is not
compressed.  All-zero chunks are recognised by comparison and cost nothing
(the zero chunk is stored once per repository, as image's fixed zero frame).
Results come back in order, so the chunk list and the volume digest are built
as the volume is read, and nothing is held but the chunks in flight.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import zstandard

from vmsnap import faults
from vmsnap.digest import CHUNK, ZERO_CHUNK_HEX, ChunkDigest, chunk_hex
from vmsnap.frames import Readable
from vmsnap.image import ReadBuffers, check_source_size, pump, zero_frame
from vmsnap.models import DEFAULT_LEVEL
from vmsnap.progress import Progress
from vmsnap.repo.index import ChunkIndex
from vmsnap.repo.layout import chunk_name
from vmsnap.repo.manifest import RepoDisk
from vmsnap.repo.repository import Repository

ProgressFn = Callable[[int, "Counts"], None]  # bytes of this chunk, the counts so far


@dataclass(frozen=True)
class Counts:
    """What a store did: bytes read, new (raw and compressed), deduplicated."""

    read: int = 0
    new: int = 0  # raw bytes of chunks written by this run
    stored: int = 0  # their compressed size
    deduplicated: int = 0  # raw bytes of chunks the repository held already
    new_chunks: int = 0
    chunks: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(_fields(self), _fields(other), strict=True)))


def _fields(c: Counts) -> tuple[int, ...]:
    return (c.read, c.new, c.stored, c.deduplicated, c.new_chunks, c.chunks)


def reporting(progress: Progress) -> ProgressFn:
    """A store's progress as the CLI shows it: bytes read, then new and deduplicated."""

    def report(nbytes: int, counts: Counts) -> None:
        progress.advance(nbytes)
        progress.stored(counts.new, counts.deduplicated)

    return report


@dataclass(frozen=True)
class _Stored:
    """One chunk, done: its sha256, its id, and the bytes written for it (0: held)."""

    length: int
    sha256: str
    chunk_id: str
    stored: int


class _Storer:
    """The worker's job: hash, and put the chunk unless it is held.  Ids being
    written by another worker count as held (the same bytes twice in a run)."""

    def __init__(self, repo: Repository, index: ChunkIndex, level: int, uploads: Uploads) -> None:
        self.repo, self.index, self.level = repo, index, level
        self.uploads = uploads
        self.local = threading.local()
        self.lock = threading.Lock()
        self.claimed: set[str] = set()

    def __call__(self, data: memoryview) -> _Stored:
        sha256 = chunk_hex(data)
        chunk_id = self.repo.naming.chunk_id(sha256)
        if not self._claim(chunk_id):
            return _Stored(len(data), sha256, chunk_id, 0)
        return _Stored(len(data), sha256, chunk_id, self._put(chunk_id, self._compress(data)))

    def _claim(self, chunk_id: str) -> bool:
        """True when this worker is to write the chunk."""
        with self.lock:
            if chunk_id in self.claimed:
                return False
            self.claimed.add(chunk_id)
        if chunk_id in self.index:
            return False
        if self.index.listed:  # a listing of this run did not show it
            return True
        if self.repo.backend.exists(chunk_name(chunk_id)):  # another host wrote it
            self.index.add(chunk_id)
            return False
        return True

    def _compress(self, data: memoryview) -> bytes:
        cctx = getattr(self.local, "cctx", None)
        if cctx is None:
            cctx = self.local.cctx = zstandard.ZstdCompressor(
                level=self.level, write_checksum=True, write_content_size=True
            )
        frame: bytes = cctx.compress(data)
        return frame

    def _put(self, chunk_id: str, frame: bytes) -> int:
        self.uploads.put(chunk_name(chunk_id), frame, lambda: self.index.add(chunk_id))
        return len(frame)

    def zero(self) -> _Stored:
        """The all-zero chunk: written once per repository, never compressed."""
        chunk_id = self.repo.naming.chunk_id(ZERO_CHUNK_HEX)
        stored = self._put(chunk_id, zero_frame()) if self._claim(chunk_id) else 0
        return _Stored(CHUNK, ZERO_CHUNK_HEX, chunk_id, stored)


class Uploads:
    """Where the workers' chunks go: written at once to a local folder; to a
    bucket by a pool of uploaders, so that reading, hashing and compressing
    never wait on the network.  At most ``limit`` frames wait or travel
    (memory stays bounded); the first failed upload fails the store, and
    :meth:`finish` waits for the rest before any manifest is written.
    ``then`` runs once the chunk is durably there (it goes into the index)."""

    def __init__(self, repo: Repository, threads: int = 8) -> None:
        self.repo = repo
        self.pool = ThreadPoolExecutor(threads, "vmsnap-upload") if repo.backend.remote else None
        self.room = threading.BoundedSemaphore(threads * 2)
        self.pending: list[Future[None]] = []
        self.lock = threading.Lock()

    def put(self, name: str, frame: bytes, then: Callable[[], None]) -> None:
        if self.pool is None:
            self.repo.backend.put(name, frame)
            then()
            return
        self._raise_failed()
        self.room.acquire()
        try:
            future = self.pool.submit(self._upload, name, frame, then)
        except BaseException:
            self.room.release()
            raise
        with self.lock:
            self.pending.append(future)

    def _upload(self, name: str, frame: bytes, then: Callable[[], None]) -> None:
        try:
            self.repo.backend.put(name, frame)
            then()
        finally:
            self.room.release()

    def _raise_failed(self) -> None:
        with self.lock:
            done = [f for f in self.pending if f.done()]
            self.pending = [f for f in self.pending if not f.done()]
        for future in done:
            future.result()

    def finish(self, *, quiet: bool = False) -> None:
        """Every upload done, the pool stopped; then the first error raised
        (``quiet``: none, the caller has its own)."""
        if self.pool is None:
            return
        self.pool.shutdown(wait=True, cancel_futures=quiet)
        with self.lock:
            pending, self.pending = self.pending, []
        if not quiet:
            for future in pending:
                future.result()


class _OnceZero:
    """The zero chunk's result: looked up (and written) the first time only;
    every later zero chunk in the run is free."""

    def __init__(self, storer: _Storer) -> None:
        self.storer = storer
        self.first: _Stored | None = None

    def __call__(self) -> _Stored:
        if self.first is None:
            self.first = self.storer.zero()
            return self.first
        return dataclasses.replace(self.first, stored=0)


class _Tally:
    """The chunk list, the volume digest and the counts, in order."""

    def __init__(self) -> None:
        self.digest = ChunkDigest()
        self.chunks: list[str] = []
        self.counts = Counts()

    def add(self, done: _Stored) -> None:
        self.digest.add_chunk(done.sha256, done.length)
        self.chunks.append(done.chunk_id)
        new = done.stored > 0
        self.counts = self.counts + Counts(
            read=done.length,
            new=done.length if new else 0,
            stored=done.stored,
            deduplicated=0 if new else done.length,
            new_chunks=int(new),
            chunks=1,
        )


def store_volume(
    repo: Repository,
    index: ChunkIndex,
    src: Readable,
    *,
    target: str,
    size: int | None = None,
    level: int = DEFAULT_LEVEL,
    progress: ProgressFn = lambda _n, _c: None,
) -> tuple[RepoDisk, Counts]:
    """Store ``src`` (any readable: a snapshot, a file, a pipe) as the disk
    ``target``.  ``size``, when known, is checked at the end."""
    uploads = Uploads(repo)
    storer, tally, reads = _Storer(repo, index, level, uploads), _Tally(), ReadBuffers(src)

    def emit(done: _Stored) -> None:
        tally.add(done)
        reads.release_oldest()
        progress(done.length, tally.counts)
        if tally.counts.chunks == 1:
            faults.point("streaming")  # a test may stop (and kill) a store here

    try:
        pump(reads, _OnceZero(storer), storer, emit)
    except BaseException:
        uploads.finish(quiet=True)  # no upload outlives the store; its error is the one
        raise
    uploads.finish()
    check_source_size(tally.digest.size, size)
    counts = tally.counts
    disk = RepoDisk(
        target=target,
        size=tally.digest.size,
        chunk_sha256=tally.digest.hexdigest(),
        chunks=tuple(tally.chunks),
        new_bytes=counts.new,
        stored_bytes=counts.stored,
    )
    return disk, counts
