"""Clone: a new guest from a backup or from a live template guest.

One new LV per disk, named ``<new name>-<target>``; every check (name free, LVs
free, room in the VG or pool) happens before anything is created, and whatever
was created is removed again if a later step fails.  A live template is
snapshotted under the same quiesce rules as a backup and copied LV to LV.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vmsnap import clonexml, hooks, image, lvm, manifest, store
from vmsnap.devio import open_device
from vmsnap.digest import ChunkDigest
from vmsnap.discover import Inventory, describe
from vmsnap.errors import ExistsError, NotFoundError, UsageError
from vmsnap.hooks import Hooks, Scope
from vmsnap.job import run_job
from vmsnap.journal import Journal
from vmsnap.lvwrite import RestoredDisk, io_error, write_image
from vmsnap.models import LogicalVolume, QuiesceMode, SizeSpec
from vmsnap.progress import Progress
from vmsnap.snapshots import CLONE_TAGS, guest_snapshots, new_run_id, plan_guest
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
    disks: list[RestoredDisk] = field(default_factory=list)


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
) -> RestoredDisk:
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
            raise io_error(exc, source=src_path, target=dst) from exc
    return RestoredDisk(
        target="",
        volume=dst.full_name,
        path=dst.path,
        size=done,
        chunk_sha256=digest.hexdigest(),
        created=True,
        sparse=sparse,
    )


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
    with run_job(scope, end=hooks.CLONE_END, abort=hooks.CLONE_ABORT) as job:
        if (source / store.MANIFEST).exists():
            result = _from_backup(conn, source, settings, progress)
        else:
            result = _from_guest(conn, settings, progress, job.journal, scope)
        job.wrote(d.path for d in result.disks)
    return result


def _from_backup(
    conn: Connection, folder: Path, settings: CloneSettings, progress: Progress
) -> CloneResult:
    store.require_published(folder)
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
            stats = write_image(disk, folder, lv, sparse=lv.is_thin, progress=progress)
            written.append(RestoredDisk.of(disk.target, lv, stats, created=True, sparse=lv.is_thin))
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
    plan = plan_guest(guest, run_id=new_run_id(), snapshot_size=settings.snapshot_size)
    disks = [
        _new_disk(settings, d.target, d.volume.size, d.volume, d.volume.vg) for d in plan.disks
    ]
    _check_new(conn, settings, disks)
    new_xml = clonexml.clone_xml(
        dom.definition(), name=settings.new_name, disk_paths={d.target: d.path for d in disks}
    )
    with ExitStack() as created:
        targets = [
            created.enter_context(lvm.new_volume(d.vg, d.name, d.size, d.thin_pool)) for d in disks
        ]
        with guest_snapshots(
            dom, plan, settings.quiesce, journal=journal, uri=conn.uri, tags=CLONE_TAGS, scope=scope
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
                written.append(dataclasses.replace(copied, target=p.target))
            progress.job_done()
        result = created.enter_context(_defined(conn, new_xml, settings))
        result.disks = written
        created.pop_all()
    return result
