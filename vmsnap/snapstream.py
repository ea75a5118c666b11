"""Stream one snapshot into an image file, guarded against COW overflow.

A read error from the snapshot is the snapshot's fault (an overflowed COW
snapshot returns EIO), a write error the destination's; the two are reported
apart.  Nothing here publishes: the caller renames the folder when all is well.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vmsnap import faults, image, lvm, store
from vmsnap.errors import IntegrityError
from vmsnap.guard import GuardSettings, SnapshotGuard, guard_snapshot
from vmsnap.models import LogicalVolume, human_size
from vmsnap.progress import Progress


@dataclass
class DiskResult:
    target: str
    volume: str
    size: int
    chunk_sha256: str
    image: str
    compressed_size: int
    snapshot_kind: str
    snapshot_size: int | None  # COW space at the end (None: thin)
    peak_fill_percent: float | None = None  # highest COW fill seen (None: thin)
    extended: int = 0  # bytes the guard added to the COW space


class SnapshotReader:
    """A snapshot opened for reading: its read errors are the snapshot's
    (an overflowed COW snapshot returns EIO), raised as IntegrityError."""

    def __init__(self, snap: LogicalVolume) -> None:
        self.snap = snap
        try:
            self._file = open(snap.path, "rb", buffering=0)  # noqa: SIM115 - closed in __exit__
        except OSError as exc:
            raise IntegrityError(f"cannot open snapshot {snap.full_name}: {exc.strerror}") from exc

    def read(self, size: int = -1) -> bytes:
        try:
            return self._file.read(size) or b""
        except OSError as exc:
            raise IntegrityError(
                f"read error on snapshot {self.snap.full_name}: {exc.strerror}"
            ) from exc

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._file.close()


def check_snapshot_valid(snap: LogicalVolume) -> None:
    """Raise a clear error if a COW snapshot overflowed (LVM marks it invalid)."""
    if snap.is_thin:
        return
    now = lvm.find_volume(snap.vg, snap.name)
    if now is None or lvm.is_invalid(now):
        raise IntegrityError(
            f"snapshot {snap.full_name} overflowed its {human_size(snap.size)} of COW space "
            "while it was read; its data is lost and nothing was published",
            hint="pass a larger --snapshot-size",
        )


@contextmanager
def watched(
    snap: LogicalVolume, origin_size: int, settings: GuardSettings
) -> Iterator[SnapshotGuard | None]:
    """The body reads ``snap`` under the overflow guard (none for a thin one):
    one last look when it is done, and a snapshot that overflowed is said to
    have, rather than "read error"."""
    try:
        with guard_snapshot(snap, origin_size, settings) as guard:
            yield guard
            if guard is not None:
                guard.final_check()  # a snapshot can overflow after its last read too
    except IntegrityError:
        check_snapshot_valid(snap)
        raise
    check_snapshot_valid(snap)


def _advance(progress: Progress, guard: SnapshotGuard | None) -> image.ProgressFn:
    first = [True]

    def advance(nbytes: int) -> None:
        if guard is not None:
            guard.check()
        progress.advance(nbytes)
        if first[0]:
            first[0] = False
            faults.point("streaming")

    return advance


def stream_snapshot(
    target: str,
    origin: LogicalVolume,
    snap: LogicalVolume,
    staging: Path,
    *,
    level: int,
    progress: Progress,
    guard_settings: GuardSettings,
) -> DiskResult:
    name = f"{store.safe_component(target)}.img.zst"
    path = staging / name
    progress.item(f"{target} ({origin.full_name})", origin.size)
    fd = store.open_new(path)
    try:
        with (
            watched(snap, origin.size, guard_settings) as guard,
            SnapshotReader(snap) as src,
            os.fdopen(fd, "wb", closefd=False) as out,
        ):
            stats = image.compress(
                src, out, level=level, size=origin.size, progress=_advance(progress, guard)
            )
            out.flush()
            os.fsync(fd)
    except OSError as exc:
        raise store.destination_error(exc, path) from exc
    finally:
        os.close(fd)
    progress.item_done()
    return DiskResult(
        target=target,
        volume=origin.full_name,
        size=stats.size,
        chunk_sha256=stats.chunk_sha256,
        image=name,
        compressed_size=stats.compressed_size,
        snapshot_kind=snap.kind,
        snapshot_size=None if guard is None else guard.size,
        peak_fill_percent=None if guard is None else round(guard.peak, 2),
        extended=0 if guard is None else guard.extended,
    )
