"""Restore: write a backup's disks back onto LVs, checked on the way.

The backup is read from its repository (format 3), chunk by chunk, and every
chunk it needs must be there before anything is created or written.  Onto an
existing LV (``--to``), or onto new LVs (``--vg``) that are removed again if
the restore fails or is interrupted; they are journaled and tagged unfinished
until complete, so that ``vmsnap cleanup`` removes those of a restore killed
with SIGKILL.  Zero regions are skipped only where the target is known to read
zeros (a new thin LV); everywhere else every byte is written.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass

from vmsnap import hooks, lvm, lvwrite
from vmsnap.backupname import BackupName
from vmsnap.discover import Inventory
from vmsnap.errors import DestinationError, NotFoundError, UsageError
from vmsnap.hooks import Hooks
from vmsnap.job import run_job
from vmsnap.journal import Journal
from vmsnap.lvwrite import RestoredDisk, write_disk
from vmsnap.models import LogicalVolume, human_size
from vmsnap.progress import Progress
from vmsnap.repo import locks
from vmsnap.repo.manifest import RepoDisk, RepoManifest
from vmsnap.repo.refs import BackupRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreSettings:
    backup: BackupName
    hooks: Hooks
    disks: tuple[str, ...] = ()  # targets; empty means all
    to: str | None = None  # an existing LV
    vg: str | None = None  # or new LVs in this VG
    name: str | None = None
    thin_pool: str | None = None
    force: bool = False


@dataclass(frozen=True)
class RestoreResult:
    backup: str  # the backup's label: REPO/backups/<guest>/<time>
    disks: list[RestoredDisk]


def _select(ref: BackupRef, m: RepoManifest, targets: tuple[str, ...]) -> list[RepoDisk]:
    known = {d.target: d for d in m.disks}
    missing = [t for t in targets if t not in known]
    if missing:
        raise NotFoundError(f"backup {ref.label} has no disk {', '.join(missing)}")
    return [known[t] for t in targets] if targets else list(m.disks)


def _existing_target(path: str, disk: RepoDisk, force: bool) -> LogicalVolume:
    """Checks on an existing LV: big enough, not in use, and --force to overwrite."""
    lv = Inventory.load().for_path(path)
    if lv is None:
        raise NotFoundError(f"{path} is not an LV")
    if lv.size < disk.size:
        raise DestinationError(
            f"{lv.full_name} holds {human_size(lv.size)}, the image {human_size(disk.size)}"
        )
    if lvm.is_open(lv):
        raise DestinationError(f"{lv.full_name} is in use (a running guest, a mount)")
    if not force:
        raise DestinationError(
            f"restoring would overwrite the data on {lv.full_name}", hint="pass --force"
        )
    if lv.size > disk.size:
        log.warning(
            "%s is %s larger than the image: its last bytes keep their old contents",
            lv.full_name,
            human_size(lv.size - disk.size),
        )
    return lv


def new_name(settings: RestoreSettings, disk: RepoDisk, count: int) -> str:
    if settings.name and count == 1:
        return settings.name
    if settings.name:
        return f"{settings.name}-{disk.target}"
    origin = disk.volume.split("/", 1)[-1]
    return f"{origin}-restored"


def _check_where(settings: RestoreSettings, ref: BackupRef, m: RepoManifest, count: int) -> None:
    if settings.to is not None and count != 1:
        raise UsageError("--to takes one disk: choose it with --disk TARGET")
    if settings.to is None and settings.vg is None:
        raise UsageError("say where to restore: --to /dev/VG/LV or --vg VG")
    if settings.vg is not None and settings.name is None and m.guest is None:
        raise UsageError(
            f"{ref.label} is an image (vmsnap image store), not a guest's backup: "
            "it records no LV to name the new one after",
            hint="name the new LV with --name NAME",
        )


def restore(settings: RestoreSettings, progress: Progress) -> RestoreResult:
    """Under the run lock, after the cleanup of a dead run, like every job: the
    hooks' job-start may veto it; restore-end or restore-abort follow."""
    ref = settings.backup.resolve()
    m = ref.load()
    disks = _select(ref, m, settings.disks)
    _check_where(settings, ref, m, len(disks))
    scope = settings.hooks.scope(
        VMSNAP_COMMAND="restore",
        VMSNAP_DOMAIN=m.name,
        VMSNAP_DOMAIN_UUID=m.guest.domain.uuid if m.guest is not None else "",
        VMSNAP_BACKUP_DIR=ref.label,
    )
    with (
        run_job(scope, end=hooks.RESTORE_END, abort=hooks.RESTORE_ABORT) as job,
        locks.reading(ref.repo, "restore"),
    ):
        lvwrite.require_chunks(ref, disks)
        if settings.to is not None:
            done = [_restore_onto(ref, disks[0], settings, progress)]
        else:
            done = _restore_new(ref, disks, settings, progress, job.journal)
        job.wrote(d.path for d in done)
    return RestoreResult(ref.label, done)


def _restore_onto(
    ref: BackupRef, disk: RepoDisk, settings: RestoreSettings, progress: Progress
) -> RestoredDisk:
    assert settings.to is not None
    lv = _existing_target(settings.to, disk, settings.force)
    stats = write_disk(ref, disk, lv, sparse=False, progress=progress)
    return RestoredDisk.of(disk.target, lv, stats, created=False, sparse=False)


def _check_new(vg: str, names: list[str], disks: list[RepoDisk], pool: str | None) -> None:
    """Everything that can be refused is refused before anything is created."""
    for name in names:
        if not lvm.valid_name(name):
            raise UsageError(f"{name!r} is not a valid LV name")
    lvm.require_free(vg, names)
    lvm.check_room(vg, [d.size for d in disks], pool)


def _restore_new(
    ref: BackupRef,
    disks: list[RepoDisk],
    settings: RestoreSettings,
    progress: Progress,
    journal: Journal,
) -> list[RestoredDisk]:
    vg = settings.vg
    assert vg is not None
    names = [new_name(settings, d, len(disks)) for d in disks]
    _check_new(vg, names, disks, settings.thin_pool)
    done: list[RestoredDisk] = []
    lvs: list[LogicalVolume] = []
    with ExitStack() as created:  # every new LV is removed if any disk fails
        for disk, name in zip(disks, names, strict=True):
            lv = created.enter_context(
                lvwrite.new_volume(journal, vg, name, disk.size, settings.thin_pool)
            )
            lvs.append(lv)
            sparse = lv.is_thin  # a new thin LV reads zeros; a new thick one may not
            stats = write_disk(ref, disk, lv, sparse=sparse, progress=progress)
            done.append(RestoredDisk.of(disk.target, lv, stats, created=True, sparse=sparse))
        lvwrite.finish(journal, lvs)
        created.pop_all()
    return done
