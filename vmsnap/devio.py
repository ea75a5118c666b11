"""Writing onto a block device: exclusively, in place, and fast.

Buffered writes to a block device go through the page cache and ran at about a
quarter of the speed of O_DIRECT writes from aligned buffers on this kind of
host, so whole aligned chunks are copied into a page-aligned buffer and written
with O_DIRECT; anything unaligned (a volume's odd tail) takes the buffered path.
Both paths write by position, so the sink can skip regions (seek) that must
keep reading zeros.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from vmsnap.digest import CHUNK
from vmsnap.errors import DestinationError

ALIGN = 4096  # a multiple of every logical block size


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        offset += done
        view = view[done:]


class DeviceSink:
    """A block device as an ``image.PositionalSink``.  Its size is fixed:
    truncate() does nothing, and a write past the end is refused."""

    def __init__(self, fd: int, capacity: int, direct_fd: int | None = None) -> None:
        self.fd, self.capacity, self.direct_fd = fd, capacity, direct_fd
        self.position = 0
        self._local = threading.local()  # an aligned buffer per writing thread
        self._buffers: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def write(self, data: bytes) -> int:
        self.write_at(data, self.position)
        self.position += len(data)
        return len(data)

    def write_at(self, data: bytes, offset: int) -> None:
        length = len(data)
        if offset + length > self.capacity:
            raise DestinationError("the image is larger than the target volume")
        aligned = length % ALIGN == 0 and offset % ALIGN == 0 and length <= CHUNK
        if self.direct_fd is not None and aligned:
            buffer = self._buffer()
            buffer[:length] = data
            with memoryview(buffer) as view:
                pwrite_all(self.direct_fd, view[:length], offset)
        else:
            pwrite_all(self.fd, data, offset)

    def _buffer(self) -> mmap.mmap:
        buffer: mmap.mmap | None = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = mmap.mmap(-1, CHUNK)  # page aligned
            with self._lock:
                self._buffers.append(buffer)
        return buffer

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.position = offset if whence == os.SEEK_SET else self.position + offset
        return self.position

    def truncate(self, size: int | None = None) -> int:
        return self.position if size is None else size

    def close(self) -> None:
        with self._lock:
            for buffer in self._buffers:
                buffer.close()
            self._buffers.clear()


@contextmanager
def open_device(path: str) -> Iterator[DeviceSink]:
    """Open a block device for writing, exclusively: one that is mounted or held
    (device-mapper, another exclusive opener) is refused.  Flushed on success."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        raise DestinationError(f"cannot open {path} for writing: {exc.strerror}") from exc
    direct_fd = None
    try:
        # a second, plain (not exclusive) open of the device we now hold
        with contextlib.suppress(OSError):
            direct_fd = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
        sink = DeviceSink(fd, os.lseek(fd, 0, os.SEEK_END), direct_fd)
        try:
            yield sink
        finally:
            sink.close()
        os.fsync(fd)
        if direct_fd is not None:
            os.fsync(direct_fd)
    finally:
        if direct_fd is not None:
            os.close(direct_fd)
        os.close(fd)
