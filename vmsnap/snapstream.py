"""Store one snapshot into the repository, guarded against COW overflow.

A read error from the snapshot is the snapshot's fault (an overflowed COW
snapshot returns EIO), a write error the repository's; the two are reported
apart.  Nothing here publishes: the caller writes the manifest when all is well.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from vmsnap import lvm
from vmsnap.errors import IntegrityError
from vmsnap.guard import GuardSettings, SnapshotGuard, guard_snapshot
from vmsnap.models import LogicalVolume, human_size
from vmsnap.progress import Progress
from vmsnap.repo.index import ChunkIndex
from vmsnap.repo.manifest import RepoDisk
from vmsnap.repo.repository import Repository
from vmsnap.repo.writer import Counts, ProgressFn, reporting, store_volume


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


def _advance(progress: Progress, guard: SnapshotGuard | None) -> ProgressFn:
    """Per chunk stored: the guard's look (an overflow stops the read at once),
    then the progress, with what was new and what the repository held."""

    report = reporting(progress)

    def advance(nbytes: int, counts: Counts) -> None:
        if guard is not None:
            guard.check()
        report(nbytes, counts)

    return advance


def store_snapshot(
    repo: Repository,
    index: ChunkIndex,
    target: str,
    origin: LogicalVolume,
    snap: LogicalVolume,
    *,
    level: int,
    progress: Progress,
    guard_settings: GuardSettings,
) -> tuple[RepoDisk, Counts]:
    """Store one snapshot into the repository as the disk ``target``: only the
    chunks it does not hold yet are compressed and written."""
    progress.item(f"{target} ({origin.full_name})", origin.size)
    with watched(snap, origin.size, guard_settings) as guard, SnapshotReader(snap) as src:
        disk, counts = store_volume(
            repo,
            index,
            src,
            target=target,
            size=origin.size,
            level=level,
            progress=_advance(progress, guard),
        )
    progress.item_done()
    snapshot = {
        "kind": snap.kind,
        "size": None if guard is None else guard.size,
        "peak_fill_percent": None if guard is None else round(guard.peak, 2),
        "extended": 0 if guard is None else guard.extended,
    }
    return dataclasses.replace(disk, volume=origin.full_name, snapshot=snapshot), counts
