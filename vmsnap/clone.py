"""Clone: a new guest from a backup or from a live template guest.

One new LV per disk, named ``<new name>-<target>``; every check (name free, LVs
free, room in the VG or pool) happens before anything is created, and whatever
was created is removed again if a later step fails.  A live template is
snapshotted under the same quiesce rules as a backup and copied LV to LV.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vmsnap import backup, cleanup, clonexml, hooks, image, lvm, manifest, restore, store
from vmsnap.devio import open_device
from vmsnap.digest import ChunkDigest
from vmsnap.discover import Inventory, describe
from vmsnap.errors import ExistsError, NotFoundError, UsageError
from vmsnap.hooks import Hooks, Scope
from vmsnap.journal import Journal
from vmsnap.lock import run_lock
from vmsnap.models import LogicalVolume, QuiesceMode, SizeSpec
from vmsnap.progress import Progress
from vmsnap.snapstream import check_snapshot_valid
from vmsnap.virt import Connection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CloneSettings:
    source: str  # a backup folder, or the name of a template guest
    new_name: str
    vg: str | None = None
    thin_pool: str | None = None
    quiesce: QuiesceMode = QuiesceMode.AUTO
    snapshot_size: SizeSpec | None = None
    define: bool = True
    start: bool = False
    hooks: Hooks = field(default_factory=Hooks.from_environment)


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
    disks: list[restore.RestoredDisk] = field(default_factory=list)


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


def _check_new(conn: Connection, settings: CloneSettings, disks: list[NewDisk]) -> None:
    """Everything that can be refused is refused before anything is created."""
    try:
        conn.domain(settings.new_name)
    except NotFoundError:
        pass
    else:
        raise ExistsError(f"a guest named {settings.new_name!r} already exists")
    for vg in sorted({d.vg for d in disks}):
        lvm.require_free(vg, [d.name for d in disks if d.vg == vg])
    groups: dict[tuple[str, str | None], list[int]] = {}
    for disk in disks:
        groups.setdefault((disk.vg, disk.thin_pool), []).append(disk.size)
    for (vg, pool), sizes in groups.items():
        lvm.check_room(vg, sizes, pool)


def copy_volume(
    src_path: str, dst: LogicalVolume, size: int, *, sparse: bool, progress: Progress
) -> restore.RestoredDisk:
    """Raw copy of ``size`` bytes, LV to LV; zero chunks skipped on a sparse target."""
    digest = ChunkDigest()
    done = 0
    with open(src_path, "rb", buffering=0) as src, open_device(dst.path) as sink:
        try:
            while done < size and (chunk := image.read_full(src, min(image.CHUNK, size - done))):
                digest.update(chunk)
                if sparse and chunk.count(0) == len(chunk):
                    sink.seek(len(chunk), 1)
                else:
                    sink.write(chunk)
                done += len(chunk)
                progress.advance(len(chunk))
        except OSError as exc:
            raise restore.io_error(exc, source=src_path, target=dst) from exc
    return restore.RestoredDisk("", dst.full_name, dst.path, done, digest.hexdigest(), True, sparse)


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


def clone(conn: Connection, settings: CloneSettings, progress: Progress) -> CloneResult:
    """Under the run lock: a clone's snapshots must not look like a dead run's
    leftovers to a backup starting meanwhile."""
    conn.require_local()
    source = Path(settings.source)
    scope = settings.hooks.scope(
        VMSNAP_COMMAND="clone", VMSNAP_DOMAIN=settings.new_name, VMSNAP_SOURCE=settings.source
    )
    with run_lock():
        left = cleanup.cleanup()
        with scope.job(hooks.CLONE_END, hooks.CLONE_ABORT) as volumes:
            if (source / store.MANIFEST).exists():
                result = _from_backup(conn, source, settings, progress)
            else:
                run_journal = Journal.start(carry=left.unresolved)
                try:
                    result = _from_guest(conn, settings, progress, run_journal, scope)
                finally:
                    run_journal.close()
            volumes.extend(d.path for d in result.disks)
    return result


def _from_backup(
    conn: Connection, folder: Path, settings: CloneSettings, progress: Progress
) -> CloneResult:
    m = manifest.load(folder)
    try:
        xml = (folder / store.DOMAIN_XML).read_text()
    except OSError as exc:
        raise NotFoundError(f"cannot read {folder / store.DOMAIN_XML}: {exc.strerror}") from exc
    disks = [
        _new_disk(settings, d.target, d.size, None, d.volume.split("/", 1)[0]) for d in m.disks
    ]
    _check_new(conn, settings, disks)
    dropped = frozenset(t for t, reason in m.skipped if reason == "excluded")
    new_xml = clonexml.clone_xml(
        xml,
        name=settings.new_name,
        disk_paths={d.target: d.path for d in disks},
        drop_targets=dropped,
    )
    with ExitStack() as created:
        written = []
        for plan, disk in zip(disks, m.disks, strict=True):
            lv = created.enter_context(
                lvm.new_volume(plan.vg, plan.name, plan.size, plan.thin_pool)
            )
            stats = restore.write_image(disk, folder, lv, sparse=lv.is_thin, progress=progress)
            written.append(
                restore.RestoredDisk(
                    disk.target,
                    lv.full_name,
                    lv.path,
                    stats.size,
                    stats.chunk_sha256,
                    True,
                    lv.is_thin,
                )
            )
        result = created.enter_context(_defined(conn, new_xml, settings))
        result.disks = written
        created.pop_all()
    return result


def _from_guest(
    conn: Connection,
    settings: CloneSettings,
    progress: Progress,
    journal: Journal,
    scope: Scope,
) -> CloneResult:
    dom = conn.domain(settings.source)
    guest = describe(dom, Inventory.load(), conn)
    snapshot_settings = backup.BackupSettings(
        dest=Path("."), quiesce=settings.quiesce, snapshot_size=settings.snapshot_size
    )
    plan = backup.plan_guest(guest, snapshot_settings, backup.new_run_id())
    disks = [
        _new_disk(settings, d.target, d.volume.size, d.volume, d.volume.vg) for d in plan.disks
    ]
    _check_new(conn, settings, disks)
    new_xml = clonexml.clone_xml(
        dom.definition(), name=settings.new_name, disk_paths={d.target: d.path for d in disks}
    )
    tags = (lvm.TAG, f"{lvm.TAG}-clone")
    with ExitStack() as created:
        targets = [
            created.enter_context(lvm.new_volume(d.vg, d.name, d.size, d.thin_pool)) for d in disks
        ]
        with backup.guest_snapshots(
            dom, plan, settings.quiesce, journal=journal, uri=conn.uri, tags=tags, scope=scope
        ) as (_window, snaps):
            progress.job(dom.name, plan.total_bytes)
            written = []
            for p, snap, lv in zip(plan.disks, snaps, targets, strict=True):
                progress.item(f"{p.target} -> {lv.full_name}", p.volume.size)
                copied = copy_volume(
                    snap.path, lv, p.volume.size, sparse=lv.is_thin, progress=progress
                )
                check_snapshot_valid(snap)
                progress.item_done()
                written.append(
                    restore.RestoredDisk(
                        p.target,
                        copied.volume,
                        copied.path,
                        copied.size,
                        copied.chunk_sha256,
                        True,
                        copied.sparse,
                    )
                )
            progress.job_done()
        result = created.enter_context(_defined(conn, new_xml, settings))
        result.disks = written
        created.pop_all()
    return result
