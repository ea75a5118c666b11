"""Clone: a new guest from a backup or from a live template guest.

One new LV per disk, named ``<new name>-<target>``; every check (name free, LVs
free, room in the VG or pool, the XML file writable) happens before anything is
created, and whatever was created (LVs, the XML file, the guest) is removed
again if a later step fails or a signal arrives.  The new LVs are journaled and
tagged unfinished until they are complete, so that ``vmsnap cleanup`` removes
those of a clone killed with SIGKILL.  A live template is snapshotted under the
same quiesce rules as a backup and copied LV to LV, its COW snapshots watched
by the overflow guard.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from vmsnap import clonexml, hooks, lvm, lvwrite, store
from vmsnap.backupname import BackupName
from vmsnap.discover import Inventory, describe
from vmsnap.errors import ExistsError, IntegrityError, NotFoundError, UsageError
from vmsnap.guard import GuardSettings
from vmsnap.hooks import Hooks, Scope
from vmsnap.job import run_job
from vmsnap.journal import Journal
from vmsnap.lvwrite import RestoredDisk, write_disk
from vmsnap.models import LogicalVolume, QuiesceMode, SizeSpec
from vmsnap.progress import Progress
from vmsnap.repo import locks
from vmsnap.repo.manifest import GuestPart, RepoManifest
from vmsnap.repo.refs import BackupRef
from vmsnap.snapcopy import copy_snapshot
from vmsnap.snapshots import CLONE_TAGS, GuestPlan, guest_snapshots, new_run_id, plan_guest
from vmsnap.virt import Connection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CloneSettings:
    source: BackupName | str  # a backup, or the name of a template guest
    new_name: str
    hooks: Hooks
    vg: str | None = None
    thin_pool: str | None = None
    quiesce: QuiesceMode = QuiesceMode.AUTO
    snapshot_size: SizeSpec | None = None
    define: bool = True
    start: bool = False
    xml_file: Path | None = None  # also write the new guest's XML here (0600, a new file)
    guard: GuardSettings = field(default_factory=GuardSettings)  # the CLI reads the environment


@dataclass(frozen=True)
class NewDisk:
    """One disk of the clone: where its bytes come from and where they go."""

    target: str
    size: int
    vg: str
    name: str
    thin_pool: str | None

    @property
    def path(self) -> str:
        return f"/dev/{self.vg}/{self.name}"


@dataclass
class CloneResult:
    name: str
    uuid: str = ""
    xml: str = ""
    defined: bool = False
    started: bool = False
    disks: list[RestoredDisk] = field(default_factory=list)
    backup: str | None = None  # the backup's label; None for a template


def _new_disk(
    settings: CloneSettings, target: str, size: int, origin: LogicalVolume | None, vg: str
) -> NewDisk:
    name = f"{settings.new_name}-{target}"
    if not lvm.valid_name(name):
        raise UsageError(f"{name!r} is not a valid LV name; choose another guest name")
    pool = settings.thin_pool
    if pool is None and origin is not None and origin.is_thin and (settings.vg or vg) == vg:
        pool = origin.pool  # a thin template stays thin in its own pool
    return NewDisk(target, size, settings.vg or vg, name, pool)


def _check_name(conn: Connection, name: str) -> None:
    try:
        conn.domain(name)
    except NotFoundError:
        return
    raise ExistsError(f"a guest named {name!r} already exists")


def _check_new(
    conn: Connection,
    settings: CloneSettings,
    disks: list[NewDisk],
    snapshots: dict[str, list[int]] | None = None,
) -> None:
    """Everything that can be refused is refused before anything is created.
    ``snapshots`` are the COW sizes, per VG, of the snapshots a template's copy
    takes: the room for them and for the new thick LVs is checked together."""
    _check_name(conn, settings.new_name)
    for vg in sorted({d.vg for d in disks}):
        lvm.require_free(vg, [d.name for d in disks if d.vg == vg])
    groups: dict[tuple[str, str | None], list[int]] = {}
    for vg, sizes in (snapshots or {}).items():
        groups.setdefault((vg, None), []).extend(sizes)
    for disk in disks:
        groups.setdefault((disk.vg, disk.thin_pool), []).append(disk.size)
    for (vg, pool), sizes in groups.items():
        lvm.check_room(vg, sizes, pool)


@contextmanager
def _xml_file(path: Path | None, xml: str) -> Iterator[None]:
    """Write the new guest's XML to ``path`` (0600: it may hold secrets); remove
    it again if a later step fails."""
    if path is None:
        yield
        return
    store.write_file(path, (xml + "\n").encode())
    try:
        yield
    except GeneratorExit:  # ExitStack.pop_all() kept it
        raise
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@contextmanager
def _defined(conn: Connection, xml: str, settings: CloneSettings) -> Iterator[CloneResult]:
    """Define (and start) the new guest; undefine it again if a later step fails."""
    result = CloneResult(name=settings.new_name, xml=xml, uuid=clonexml.uuid_of(xml))
    if not settings.define:
        yield result
        return
    dom = conn.define(xml)
    result.defined = True
    try:
        if settings.start:
            dom.start()
            result.started = True
        yield result
    except GeneratorExit:  # ExitStack.pop_all() kept it: the guest stays
        raise
    except BaseException:
        conn.undefine(dom)
        raise


def _complete(
    created: ExitStack,
    conn: Connection,
    xml: str,
    settings: CloneSettings,
    journal: Journal,
    written: list[tuple[LogicalVolume, RestoredDisk]],
) -> CloneResult:
    """Every disk is copied: the XML file, the LVs kept (no longer unfinished),
    the guest defined (and started); then nothing is undone any more."""
    created.enter_context(_xml_file(settings.xml_file, xml))
    lvwrite.finish(journal, [lv for lv, _disk in written])
    result = created.enter_context(_defined(conn, xml, settings))
    result.disks = [disk for _lv, disk in written]
    created.pop_all()
    return result


def clone(conn: Connection, settings: CloneSettings, progress: Progress) -> CloneResult:
    """Under the run lock: a clone's snapshots must not look like a dead run's
    leftovers to a backup starting meanwhile.  The cheap refusals come first,
    before the lock; they are made again inside it."""
    conn.require_local()
    _check_name(conn, settings.new_name)
    if settings.xml_file is not None:
        store.check_new_file(settings.xml_file)
    ref = settings.source.resolve() if isinstance(settings.source, BackupName) else None
    scope = settings.hooks.scope(
        VMSNAP_COMMAND="clone",
        VMSNAP_DOMAIN=settings.new_name,
        VMSNAP_SOURCE=ref.label if ref is not None else str(settings.source),
    )
    with (
        run_job(scope, end=hooks.CLONE_END, abort=hooks.CLONE_ABORT) as job,
        locks.reading(ref.repo, "clone") if ref is not None else nullcontext(),
    ):
        if ref is not None:
            result = _from_backup(conn, ref, settings, progress, job.journal)
        else:
            result = _from_guest(conn, settings, progress, job.journal, scope)
        job.wrote(d.path for d in result.disks)
    return result


def _guest_of(ref: BackupRef, m: RepoManifest) -> tuple[GuestPart, str]:
    """The guest part of a guest's backup, and its domain.xml, checked against
    the manifest's digest before anything is made of it."""
    if m.guest is None:
        raise UsageError(
            f"{ref.label} is an image (vmsnap image store): it has no guest to clone",
            hint="restore it onto an LV with vmsnap restore",
        )
    data = ref.domain_xml()
    if hashlib.sha256(data).hexdigest() != m.guest.domain.xml_sha256:
        raise IntegrityError(f"{ref.label}: its domain.xml does not match the manifest's sha256")
    try:
        return m.guest, data.decode()
    except UnicodeDecodeError as exc:
        raise IntegrityError(f"{ref.label}: its domain.xml is not UTF-8: {exc}") from None


def _from_backup(
    conn: Connection, ref: BackupRef, settings: CloneSettings, progress: Progress, journal: Journal
) -> CloneResult:
    m = ref.load()
    guest, xml = _guest_of(ref, m)
    disks = [
        _new_disk(settings, d.target, d.size, None, d.volume.split("/", 1)[0]) for d in m.disks
    ]
    _check_new(conn, settings, disks)
    dropped = frozenset(t for t, reason in guest.skipped if reason == "excluded")
    new_xml = clonexml.clone_xml(
        xml,
        name=settings.new_name,
        disk_paths={d.target: d.path for d in disks},
        drop_targets=dropped,
    )
    lvwrite.require_chunks(ref, list(m.disks))
    with ExitStack() as created:
        written = []
        for plan, disk in zip(disks, m.disks, strict=True):
            lv = created.enter_context(
                lvwrite.new_volume(journal, plan.vg, plan.name, plan.size, plan.thin_pool)
            )
            stats = write_disk(ref, disk, lv, sparse=lv.is_thin, progress=progress)
            done = RestoredDisk.of(disk.target, lv, stats, created=True, sparse=lv.is_thin)
            written.append((lv, done))
        result = _complete(created, conn, new_xml, settings, journal, written)
    result.backup = ref.label
    return result


def _cow_sizes(plan: GuestPlan) -> dict[str, list[int]]:
    sizes: dict[str, list[int]] = {}
    for d in plan.disks:
        if d.cow_size is not None:
            sizes.setdefault(d.volume.vg, []).append(d.cow_size)
    return sizes


def _from_guest(
    conn: Connection,
    settings: CloneSettings,
    progress: Progress,
    journal: Journal,
    scope: Scope,
) -> CloneResult:
    assert isinstance(settings.source, str)
    dom = conn.domain(settings.source)
    guest = describe(dom, Inventory.load(), conn)
    plan = plan_guest(guest, run_id=new_run_id(), snapshot_size=settings.snapshot_size)
    disks = [
        _new_disk(settings, d.target, d.volume.size, d.volume, d.volume.vg) for d in plan.disks
    ]
    _check_new(conn, settings, disks, _cow_sizes(plan))
    new_xml = clonexml.clone_xml(
        dom.definition(), name=settings.new_name, disk_paths={d.target: d.path for d in disks}
    )
    with ExitStack() as created:
        targets = [
            created.enter_context(lvwrite.new_volume(journal, d.vg, d.name, d.size, d.thin_pool))
            for d in disks
        ]
        with guest_snapshots(
            dom, plan, settings.quiesce, journal=journal, uri=conn.uri, tags=CLONE_TAGS, scope=scope
        ) as (_window, snaps):
            progress.job(dom.name, plan.total_bytes)
            written = [
                (lv, copy_snapshot(p.target, p.volume, snap, lv, progress=progress,
                                   guard_settings=settings.guard))
                for p, snap, lv in zip(plan.disks, snaps, targets, strict=True)
            ]  # fmt: skip
            progress.job_done()
        return _complete(created, conn, new_xml, settings, journal, written)
