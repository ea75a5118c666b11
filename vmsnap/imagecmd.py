"""``vmsnap image dump|load``: the streaming engine on any device, file or pipe.

A file output is written under a temporary name and renamed when complete;
``-`` is stdin or stdout.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from vmsnap import devio, image, store
from vmsnap.errors import DestinationError, NotFoundError
from vmsnap.image import StreamStats
from vmsnap.progress import Progress

__all__ = ["StreamStats", "dump", "load"]


@contextmanager
def _input(path: str) -> Iterator[tuple[BinaryIO, int | None]]:
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


@contextmanager
def _new_file(path: Path) -> Iterator[BinaryIO]:
    """A new file written as ``.NAME.partial`` and renamed into place on success."""
    if path.exists() or path.is_symlink():
        raise DestinationError(f"{path} exists; refusing to overwrite it")
    temp = path.with_name(f".{path.name}{store.PARTIAL_SUFFIX}")
    fd = store.open_new(temp)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.rename(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _stdout() -> BinaryIO:
    return os.fdopen(os.dup(1), "wb")


def dump(source: str, output: str, *, level: int, progress: Progress) -> StreamStats:
    with _input(source) as (src, size):
        try:
            with _stdout() if output == "-" else _new_file(Path(output)) as out:
                progress.item(source, size)
                stats = image.compress(src, out, level=level, size=size, progress=progress.advance)
        except OSError as exc:
            raise store.destination_error(exc, Path(output)) from exc
        progress.item_done()
    return stats


@contextmanager
def _target(path: str, *, force: bool) -> Iterator[tuple[image.Sink, bool, int | None]]:
    """Open the load target: (sink, reads-as-zeros, capacity)."""
    if path == "-":
        with _stdout() as out:
            yield out, False, None
        return
    target = Path(path)
    if not target.exists():
        with _new_file(target) as out:
            yield _FileSink(out), True, None
        return
    mode = target.stat().st_mode
    if stat.S_ISBLK(mode):  # exclusively: refused (EBUSY) while mounted or held
        with devio.open_device(path) as device:
            yield device, False, device.capacity
        return
    if stat.S_ISREG(mode) and not force:
        raise DestinationError(f"{path} exists; pass --force to overwrite it")
    flags = os.O_WRONLY | (os.O_TRUNC if stat.S_ISREG(mode) else 0)
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise DestinationError(f"cannot open {path} for writing: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as out:
        yield (_FileSink(out) if stat.S_ISREG(mode) else out), stat.S_ISREG(mode), None
        out.flush()
        if stat.S_ISREG(mode):
            os.fsync(out.fileno())


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
    with _input(image_path) as (src, _size):
        with _target(target, force=force) as (out, zeros, capacity):
            _check_fits(src, capacity, target)
            progress.item(f"{image_path} -> {target}", None)
            try:
                stats = image.decompress(src, out, sparse=zeros, progress=progress.advance)
            except OSError as exc:
                raise store.destination_error(exc, Path(target)) from exc
            progress.item_done()
    return stats
