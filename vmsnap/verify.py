"""``vmsnap verify``: decode every image of a backup and check it against the
manifest (length, chunk sha256) and zstd's own frame checksums.

Needs neither libvirt nor LVM: only the backup folders.  Each disk is reported
OK, CORRUPT (its bytes are wrong), MISSING (its image is gone) or INCOMPLETE
(its image was cut short); a ``.partial`` folder is an INCOMPLETE backup.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vmsnap import catalog, image, manifest, store
from vmsnap.errors import ExitCode, IntegrityError, NotFoundError, TruncatedError
from vmsnap.manifest import ManifestDisk
from vmsnap.progress import Progress
from vmsnap.store import PARTIAL_SUFFIX

UNPUBLISHED = "unpublished: an interrupted run"


class DiskStatus(enum.StrEnum):
    OK = "OK"
    CORRUPT = "CORRUPT"  # the bytes are not the ones the manifest describes
    MISSING = "MISSING"  # the file is gone
    INCOMPLETE = "INCOMPLETE"  # cut short, or never published


_WORST_FIRST = (DiskStatus.CORRUPT, DiskStatus.MISSING, DiskStatus.INCOMPLETE)


@dataclass(frozen=True)
class DiskReport:
    """One disk; ``size`` and ``chunk_sha256`` are the manifest's: what the image must
    decode to (on failure, ``message`` says what it did)."""

    target: str
    image: str
    status: DiskStatus
    message: str
    size: int
    chunk_sha256: str

    @property
    def ok(self) -> bool:
        return self.status is DiskStatus.OK


@dataclass(frozen=True)
class BackupReport:
    """One backup folder.  ``manifest_ok`` is False when the manifest could not be
    trusted (missing, rejected) or was not read (a ``.partial`` folder): then
    ``disks`` is empty and ``message`` says why."""

    directory: Path
    manifest_ok: bool
    message: str
    disks: tuple[DiskReport, ...]
    status: DiskStatus  # the worst of the disks', or the manifest's

    @property
    def ok(self) -> bool:
        return self.status is DiskStatus.OK


class _NullSink:
    """Discards decoded bytes: verifying needs only their length and digest."""

    def write(self, data: bytes, /) -> int:
        return len(data)

    def write_at(self, data: bytes, offset: int, /) -> None:
        """Positional, so that the workers drop what they decode at once."""

    def seek(self, offset: int, whence: int = 0, /) -> int:  # noqa: ARG002 - image.Sink
        return 0

    def truncate(self, size: int | None = None, /) -> int:
        return size or 0


# ---------------------------------------------------------------- one disk


def _open_image(path: Path) -> BinaryIO:
    """Open an image for reading; a FIFO or a folder in its place is refused
    without blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IntegrityError("not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def verify_disk(directory: Path, disk: ManifestDisk, progress: Progress) -> DiskReport:
    """Decode one image, checking framing, zstd checksums, length and digest."""
    try:
        src = _open_image(directory / disk.image)
    except FileNotFoundError:
        return _disk_report(disk, DiskStatus.MISSING, f"{disk.image} is missing")
    except IntegrityError as exc:
        return _disk_report(disk, DiskStatus.CORRUPT, f"{disk.image}: {exc}")
    except OSError as exc:
        return _disk_report(disk, DiskStatus.CORRUPT, f"cannot open {disk.image}: {exc.strerror}")
    progress.item(f"{disk.target} ({disk.image})", disk.size)
    try:
        with src:
            return _decode(src, disk, progress)
    finally:
        progress.item_done()


def _decode(src: BinaryIO, disk: ManifestDisk, progress: Progress) -> DiskReport:
    on_disk = os.fstat(src.fileno()).st_size
    try:
        stats = image.decompress(
            src,
            _NullSink(),
            expected_size=disk.size,
            expected_digest=disk.chunk_sha256,
            sparse=False,
            progress=progress.advance,
        )
    except TruncatedError as exc:
        return _disk_report(disk, DiskStatus.INCOMPLETE, f"{exc}{_shorter(on_disk, disk)}")
    except IntegrityError as exc:
        return _disk_report(disk, DiskStatus.CORRUPT, str(exc))
    except OSError as exc:
        return _disk_report(disk, DiskStatus.CORRUPT, f"read error: {exc.strerror}")
    if stats.compressed_size != disk.compressed_size:
        message = (
            f"image is {stats.compressed_size} bytes, the manifest says {disk.compressed_size}"
        )
        return _disk_report(disk, DiskStatus.CORRUPT, message)
    return _disk_report(disk, DiskStatus.OK, "OK")


def _shorter(on_disk: int, disk: ManifestDisk) -> str:
    if on_disk >= disk.compressed_size:
        return ""
    return f" (the file holds {on_disk} of its {disk.compressed_size} bytes)"


def _disk_report(disk: ManifestDisk, status: DiskStatus, message: str) -> DiskReport:
    return DiskReport(
        target=disk.target,
        image=disk.image,
        status=status,
        message=message,
        size=disk.size,
        chunk_sha256=disk.chunk_sha256,
    )


# ---------------------------------------------------------------- one backup


def verify_backup(directory: Path, progress: Progress) -> BackupReport:
    """Check a backup folder's manifest, then every image it lists."""
    if directory.name.endswith(PARTIAL_SUFFIX):
        return _unchecked(directory, DiskStatus.INCOMPLETE, UNPUBLISHED)
    try:
        found = manifest.load(directory)
    except NotFoundError as exc:
        return _unchecked(directory, DiskStatus.MISSING, str(exc))
    except IntegrityError as exc:
        return _unchecked(directory, DiskStatus.CORRUPT, str(exc))
    xml_problem = _check_domain_xml(found)
    if xml_problem:
        return _unchecked(directory, DiskStatus.CORRUPT, xml_problem)
    progress.job(f"{found.domain_name} {directory.name}", found.total_size)
    try:
        disks = tuple(verify_disk(directory, d, progress) for d in found.disks)
    finally:
        progress.job_done()
    return BackupReport(
        directory=directory,
        manifest_ok=True,
        message=_summary(disks),
        disks=disks,
        status=worst(d.status for d in disks),
    )


def _check_domain_xml(found: manifest.Manifest) -> str | None:
    """domain.xml is what a restore or clone redefines the guest from."""
    if found.domain_xml_sha256 is None:
        return None
    path = found.directory / store.DOMAIN_XML
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"{path}: cannot read it: {exc.strerror}"
    if digest != found.domain_xml_sha256:
        return f"{path} was changed or damaged: its sha256 does not match the manifest"
    return None


def _unchecked(directory: Path, status: DiskStatus, message: str) -> BackupReport:
    return BackupReport(
        directory=directory, manifest_ok=False, message=message, disks=(), status=status
    )


def _summary(disks: tuple[DiskReport, ...]) -> str:
    failed = [d for d in disks if not d.ok]
    if not failed:
        return f"{len(disks)} disk(s) OK"
    return f"{len(failed)} of {len(disks)} disk(s) failed: " + ", ".join(
        f"{d.target} {d.status}" for d in failed
    )


def worst(statuses: Iterable[DiskStatus]) -> DiskStatus:
    """The status that sums up several: any failure beats OK."""
    seen = set(statuses)
    return next((s for s in _WORST_FIRST if s in seen), DiskStatus.OK)


# ---------------------------------------------------------------- paths


def backup_folders(paths: Sequence[Path]) -> list[Path]:
    """Every backup and ``.partial`` folder the paths name, each once, in order.

    Raises NotFoundError for a path that does not exist or holds no backup, before
    anything is decoded.
    """
    folders: dict[Path, Path] = {}
    for path in paths:
        found = sorted(catalog.find_backups(path) + catalog.find_partials(path))
        if not found:
            raise NotFoundError(f"{path}: no backups there")
        for folder in found:
            folders.setdefault(folder.resolve(), folder)
    return list(folders.values())


def verify_paths(paths: Sequence[Path], progress: Progress) -> list[BackupReport]:
    """Verify every backup at ``paths`` (backup folders, guest folders, destinations),
    and record each result whose manifest could be read in the backup's
    ``verified.json`` (what ``backups`` shows and ``prune`` counts) as it is known."""
    reports = []
    for folder in backup_folders(paths):
        report = verify_backup(folder, progress)
        if report.manifest_ok:
            catalog.record_verified(report.directory, str(report.status), time.time())
        reports.append(report)
    return reports


def exit_code(reports: Sequence[BackupReport]) -> ExitCode:
    """OK when every backup is; INTEGRITY when any disk or manifest failed."""
    return ExitCode.OK if all(r.ok for r in reports) else ExitCode.INTEGRITY
