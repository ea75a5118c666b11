"""Writing onto an LV: one disk of a backup decoded onto it, checked on the way,
and the record of what was written; the new LVs a job creates, journaled and
tagged unfinished until they are complete.  Restore and clone share it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from vmsnap import faults, image, lvm
from vmsnap.devio import open_device
from vmsnap.errors import DestinationError, IntegrityError, LvmError, MissingChunkError
from vmsnap.journal import Journal
from vmsnap.models import LogicalVolume
from vmsnap.progress import Progress
from vmsnap.repo import check, reader
from vmsnap.repo.layout import chunk_name
from vmsnap.repo.manifest import RepoDisk
from vmsnap.repo.refs import BackupRef


@dataclass(frozen=True, kw_only=True)
class RestoredDisk:
    """One LV written by a restore or a clone."""

    target: str
    volume: str
    path: str
    size: int
    chunk_sha256: str
    created: bool  # a new LV (removed again if the job fails), not an existing one
    sparse: bool  # zero regions were skipped, not written

    @classmethod
    def of(
        cls,
        target: str,
        lv: LogicalVolume,
        stats: image.StreamStats,
        *,
        created: bool,
        sparse: bool,
    ) -> RestoredDisk:
        """What ``write_disk`` wrote onto ``lv`` for the disk ``target``."""
        return cls(
            target=target,
            volume=lv.full_name,
            path=lv.path,
            size=stats.size,
            chunk_sha256=stats.chunk_sha256,
            created=created,
            sparse=sparse,
        )


def io_error(exc: OSError, *, source: str, target: LogicalVolume) -> DestinationError:
    """A read or write error while filling ``target``: a full thin pool, EIO."""
    where = source if exc.filename == source else target.full_name
    return DestinationError(f"I/O error on {where}: {exc.strerror or exc}")


def require_chunks(ref: BackupRef, disks: list[RepoDisk]) -> None:
    """Every chunk the disks need is in the repository: a missing one is
    refused before any LV is created or written (a look-up per chunk in a
    folder, one listing of the chunks in a bucket)."""
    needed = sorted({c for d in disks for c in d.chunks})
    if ref.repo.backend.remote:
        missing = check.missing_chunks(ref.repo, needed)
    else:
        missing = [c for c in needed if not ref.repo.backend.exists(chunk_name(c))]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MissingChunkError(f"{ref.label}: chunk {missing[0]} is missing{more}")


def write_disk(
    ref: BackupRef, disk: RepoDisk, target: LogicalVolume, *, sparse: bool, progress: Progress
) -> image.StreamStats:
    """Decode one disk of the backup onto ``target``, its chunks in order;
    the length and chunk digest are checked on the way (decoded once)."""
    progress.item(f"{disk.target} -> {target.full_name}", disk.size)
    pieces = reader.image_stream(ref.repo, disk, where=ref.label, verify=False)
    with open_device(target.path) as sink:
        try:
            stats = image.decompress(
                reader.StreamReader(pieces),
                sink,
                expected_size=disk.size,
                expected_digest=disk.chunk_sha256,
                sparse=sparse,
                progress=faults.after_first("copying", progress.advance),
            )
        except MissingChunkError:
            raise
        except IntegrityError as exc:
            raise damaged_chunk(ref, disk, exc) from exc
        except OSError as exc:
            raise io_error(exc, source=ref.label, target=target) from exc
    progress.item_done()
    return stats


def damaged_chunk(ref: BackupRef, disk: RepoDisk, exc: IntegrityError) -> IntegrityError:
    """The decoder knows only that the stream is bad: each chunk is checked
    against its id, in order, to name the first one that is not right."""
    try:
        for _frame in reader.frames(ref.repo, disk, where=ref.label, verify=True):
            pass
    except IntegrityError as found:  # corrupt, or missing since the check before
        return found
    return IntegrityError(f"{ref.label}: disk {disk.target}: {exc.message}")


@contextmanager
def new_volume(
    journal: Journal, vg: str, name: str, size: int, thin_pool: str | None
) -> Iterator[LogicalVolume]:
    """A new LV for a job to fill, removed again if the body fails.  Journaled
    before ``lvcreate`` and tagged unfinished until :func:`finish`, so that
    ``vmsnap cleanup`` removes it after a ``kill -9`` (and only then)."""
    journal.note_volume(f"{vg}/{name}")
    try:
        with lvm.new_volume(vg, name, size, thin_pool, tags=(lvm.UNFINISHED_TAG,)) as lv:
            yield lv
    except GeneratorExit:  # ExitStack.pop_all() kept it: the caller owns it now
        raise
    except BaseException:
        _forget_if_gone(journal, vg, name)
        raise


def _forget_if_gone(journal: Journal, vg: str, name: str) -> None:
    """After a failure: an LV that was removed (or never made) leaves the
    journal; one that is still there stays on record for ``vmsnap cleanup``."""
    try:
        if lvm.find_volume(vg, name) is None:
            journal.forget_volume(f"{vg}/{name}")
    except (LvmError, DestinationError):  # the failure on its way matters more
        pass


def finish(journal: Journal, volumes: list[LogicalVolume]) -> None:
    """Their data is complete: the new LVs lose the unfinished tag and leave the
    journal, so no cleanup removes them."""
    for lv in volumes:
        lvm.retag(lv, delete=(lvm.UNFINISHED_TAG,))
        journal.forget_volume(lv.full_name)
