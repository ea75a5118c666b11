"""The repository commands that need no guest: init, image store, export;
and finding a backup in a repository by name and time.

A backup is published by writing its manifest, last, in one atomic put: a
run stopped at any point before leaves chunks that nothing names (garbage
collection takes them later) and no backup.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vmsnap import faults, imagecmd, store
from vmsnap.errors import NotFoundError, UsageError
from vmsnap.lock import run_lock
from vmsnap.progress import Progress
from vmsnap.repo import locks, reader, refs
from vmsnap.repo import manifest as rmanifest
from vmsnap.repo.index import open_index
from vmsnap.repo.location import Dest, init_dest, open_dest
from vmsnap.repo.manifest import RepoDisk, RepoManifest
from vmsnap.repo.repository import Repository
from vmsnap.repo.writer import Counts, reporting, store_volume


@dataclass(frozen=True)
class StoreResult:
    repository: str
    name: str
    backup: str  # the manifest's object name
    disk: RepoDisk
    counts: Counts


@dataclass(frozen=True)
class ExportResult:
    backup: str
    target: str
    size: int
    chunk_sha256: str
    written: int  # bytes of the image


def init(dest: Dest) -> Repository:
    return init_dest(dest)


def store_image(
    dest: Dest, source: str, *, name: str, level: int, progress: Progress
) -> StoreResult:
    """Store a file or block device (or stdin) as a backup of its own, one disk
    called NAME; under the run lock, so that no garbage collection on this host
    deletes a chunk it counts on."""
    repo = open_dest(dest)
    with (
        imagecmd.open_input(source) as (src, size),  # the same opening as image dump
        run_lock(),
        locks.shared(repo, "image store") as held,
        open_index(repo) as index,
    ):
        progress.item(f"{source} -> {name}", size)
        disk, counts = store_volume(
            repo, index, src, target=name, size=size, level=level, progress=reporting(progress)
        )
        progress.item_done()
        held.check()
        published = publish(repo, rmanifest.new(name, "image", (disk,)))
    return StoreResult(repo.location, name, published, disk, counts)


def next_ref(repo: Repository, name: str, created: float) -> refs.BackupRef:
    """Where a backup made at ``created`` goes: its UTC time, ``-2`` etc. if taken."""
    base = store.timestamp(created)
    ref, n = refs.BackupRef(repo, name, base), 1
    while repo.backend.exists(ref.manifest_name):
        n += 1
        ref = refs.BackupRef(repo, name, f"{base}-{n}")
    return ref


def publish_at(
    ref: refs.BackupRef, m: RepoManifest, beside: Mapping[str, bytes] | None = None
) -> refs.BackupRef:
    """Write the backup's other objects (``beside``: file name -> bytes, such as
    domain.xml), then its manifest, last: the backup exists from then on."""
    for file, data in (beside or {}).items():
        ref.repo.backend.put(ref.prefix + file, data)
    faults.point("publishing")
    ref.repo.backend.put(ref.manifest_name, rmanifest.to_bytes(m))
    return ref


def publish(repo: Repository, m: RepoManifest, beside: Mapping[str, bytes] | None = None) -> str:
    """Publish ``m`` under its own time; the manifest's object name."""
    ref = next_ref(repo, m.name, _created_seconds(m))
    return publish_at(ref, m, beside).manifest_name


def _created_seconds(m: RepoManifest) -> float:
    return calendar.timegm(time.strptime(m.created, "%Y-%m-%dT%H:%M:%SZ"))


# ---------------------------------------------------------------- export


@contextmanager
def _output(path: str) -> Iterator[BinaryIO]:
    if path != "-":
        with imagecmd.new_output_file(Path(path)) as out:  # the same renamed-into-place file
            yield out
        return
    with imagecmd.binary_stdout() as out:  # as image dump: never a terminal
        yield out


def export(
    dest: Dest,
    guest: str,
    *,
    disk: str | None,
    at: str | None,
    output: str,
    progress: Progress,
) -> ExportResult:
    """The disk of a backup as one image file, its frames copied, each checked."""
    repo = open_dest(dest)
    with locks.reading(repo, "export"):
        return _export(repo, guest, disk=disk, at=at, output=output, progress=progress)


def _export(
    repo: Repository,
    guest: str,
    *,
    disk: str | None,
    at: str | None,
    output: str,
    progress: Progress,
) -> ExportResult:
    ref = refs.find(repo, guest, at)
    name, m = ref.manifest_name, ref.load()
    try:
        chosen = m.disk(disk)
    except LookupError as exc:
        raise (UsageError if disk is None else NotFoundError)(str(exc)) from None
    where = f"{repo.location}/{name}"
    written = 0
    with _output(output) as out:
        progress.item(f"{guest}:{chosen.target}", chosen.size)
        try:
            for frame, length in reader.image_stream(repo, chosen, where=where):
                out.write(frame)
                written += len(frame)
                progress.advance(length)
        except OSError as exc:
            raise store.destination_error(exc, Path(output)) from exc
        progress.item_done()
    return ExportResult(name, chosen.target, chosen.size, chosen.chunk_sha256, written)
