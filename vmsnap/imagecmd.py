"""``vmsnap image dump|load``: the streaming engine on any device, file or pipe.

A file output is written aside (``.NAME.<pid>.partial``) and renamed into
place when complete, also when ``--force`` replaces an existing file; ``-`` is
stdin or stdout.  An existing target of any kind (a file, a block device) is
only written with ``--force``; a binary image is never written to a terminal.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO

from vmsnap import aside, devio, image, store
from vmsnap.errors import DestinationError, IntegrityError, NotFoundError
from vmsnap.image import StreamStats
from vmsnap.progress import Progress

__all__ = ["StreamStats", "dump", "load"]


@contextmanager
def open_input(path: str) -> Iterator[tuple[BinaryIO, int | None]]:
    if path == "-":
        with os.fdopen(os.dup(0), "rb") as stdin:
            yield stdin, None
        return
    try:
        src = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError as exc:
        raise NotFoundError(f"{path}: no such file or device") from exc
    except OSError as exc:
        raise NotFoundError(f"cannot open {path}: {exc.strerror}") from exc
    with src:
        yield src, image.device_size(src.fileno())


def _stdout() -> BinaryIO:
    return os.fdopen(os.dup(1), "wb")


def binary_stdout() -> BinaryIO:
    """Standard output for a binary image: never a terminal (as zstd refuses)."""
    if os.isatty(1):
        raise DestinationError(
            "refusing to write a binary image to a terminal",
            hint="redirect standard output to a file or a pipe",
        )
    return _stdout()


def new_output_file(path: Path) -> AbstractContextManager[BinaryIO]:
    if path.exists() or path.is_symlink():
        raise DestinationError(f"{path} exists; refusing to overwrite it")
    return aside.written_aside(path)


def dump(source: str, output: str, *, level: int, progress: Progress) -> StreamStats:
    with open_input(source) as (src, size):
        try:
            with binary_stdout() if output == "-" else new_output_file(Path(output)) as out:
                progress.item(source, size)
                stats = image.compress(src, out, level=level, size=size, progress=progress.advance)
        except OSError as exc:
            raise store.destination_error(exc, Path(output)) from exc
        progress.item_done()
    return stats


Target = tuple[image.Sink, bool, int | None]
"""An open load target: the sink, whether it reads as zeros, its capacity."""


@contextmanager
def _target(path: str, *, force: bool) -> Iterator[Target]:
    if path == "-":
        with _stdout() as out:
            yield out, False, None
        return
    target = Path(path)
    if not target.exists():
        with new_output_file(target) as out:
            yield _FileSink(out), True, None
        return
    if not force:
        raise DestinationError(f"{path} exists; pass --force to overwrite it")
    with _existing(target) as opened:
        yield opened


@contextmanager
def _existing(target: Path) -> Iterator[Target]:
    """An existing target (--force): a regular file is replaced only once the new
    one is complete; a block device is written in place, exclusively (refused
    while mounted or held); anything else (a pipe, a character device) as a stream."""
    info = target.stat()
    if stat.S_ISREG(info.st_mode):
        with aside.written_aside(Path(os.path.realpath(target)), replace=info) as out:
            yield _FileSink(out), True, None
    elif stat.S_ISBLK(info.st_mode):
        with devio.open_device(str(target)) as device:
            try:
                yield device, False, device.capacity
            except IntegrityError as exc:
                exc.add_note(f"{target} was written in place: it may hold part of the image")
                raise
    else:
        with _open_stream(target) as out:
            yield out, False, None


@contextmanager
def _open_stream(target: Path) -> Iterator[BinaryIO]:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise DestinationError(f"cannot open {target} for writing: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as out:
        yield out


class _FileSink:
    """A regular file as an ``image.PositionalSink``: the decoding workers write
    their chunks in place, in parallel."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def write(self, data: bytes) -> int:
        return self.out.write(data)

    def write_at(self, data: bytes, offset: int) -> None:
        devio.pwrite_all(self.out.fileno(), data, offset)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.out.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        return self.out.truncate(size)


def _check_fits(src: BinaryIO, capacity: int | None, target: str) -> None:
    """Refuse, before writing anything, an image whose header declares more
    bytes than the target holds."""
    peek = getattr(src, "peek", None)
    head = peek(image.HEAD_BYTES)[: image.HEAD_BYTES] if peek else b""
    declared = image.declared_size(head) if head else None
    if capacity is not None and declared is not None and declared > capacity:
        raise DestinationError(
            f"{target} holds {capacity} bytes, the image is larger ({declared} bytes)"
        )


def load(image_path: str, target: str, *, force: bool, progress: Progress) -> StreamStats:
    with open_input(image_path) as (src, _size):
        with _target(target, force=force) as (out, zeros, capacity):
            _check_fits(src, capacity, target)
            progress.item(f"{image_path} -> {target}", None)
            try:
                stats = image.decompress(src, out, sparse=zeros, progress=progress.advance)
            except OSError as exc:
                raise store.destination_error(exc, Path(target)) from exc
            progress.item_done()
    return stats
