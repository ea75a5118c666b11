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
from collections.abc import Iterator
from contextlib import contextmanager

from vmsnap.digest import CHUNK
from vmsnap.errors import DestinationError

ALIGN = 4096  # a multiple of every logical block size


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        offset += done
        view = view[done:]


class DeviceSink:
    """A block device as an ``image.Sink``.  Its size is fixed: truncate()
    does nothing, and a write past the end is refused."""

    def __init__(self, fd: int, capacity: int, direct_fd: int | None = None) -> None:
        self.fd, self.capacity, self.direct_fd = fd, capacity, direct_fd
        self.position = 0
        self._buffer = mmap.mmap(-1, CHUNK) if direct_fd is not None else None

    def write(self, data: bytes) -> int:
        length = len(data)
        if self.position + length > self.capacity:
            raise DestinationError("the image is larger than the target volume")
        buffer = self._buffer
        aligned = length % ALIGN == 0 and self.position % ALIGN == 0 and length <= CHUNK
        if buffer is not None and self.direct_fd is not None and aligned:
            buffer[:length] = data
            with memoryview(buffer) as view:
                _pwrite_all(self.direct_fd, view[:length], self.position)
        else:
            _pwrite_all(self.fd, data, self.position)
        self.position += length
        return length

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.position = offset if whence == os.SEEK_SET else self.position + offset
        return self.position

    def truncate(self, size: int | None = None) -> int:
        return self.position if size is None else size

    def close(self) -> None:
        if self._buffer is not None:
            self._buffer.close()


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
