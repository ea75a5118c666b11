"""Backup orchestration: plan every guest, then for each one quiesce, snapshot,
release, stream, publish, and remove the snapshots on every way out."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmsnap import __version__, cleanup, faults, hooks, image, lvm, store
from vmsnap.discover import Inventory, describe
from vmsnap.errors import (
    DestinationError,
    ExitCode,
    Interrupted,
    NoSpaceError,
    UnsupportedDiskError,
    UsageError,
    VmsnapError,
    worst,
)
from vmsnap.guard import GuardSettings
from vmsnap.hooks import Hooks, Scope
from vmsnap.journal import Journal
from vmsnap.lock import run_lock
from vmsnap.manifest import seal
from vmsnap.models import Disk, Guest, LogicalVolume, QuiesceMode, SizeSpec, human_size
from vmsnap.progress import Progress
from vmsnap.quiesce import Window, quiesced
from vmsnap.snapstream import DiskResult, stream_snapshot
from vmsnap.virt import Connection, Domain

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
DEFAULT_SNAPSHOT_SHARE = 20.0  # percent of the origin, for a COW snapshot
MIN_SNAPSHOT_SHARE = 5.0  # below this a default-sized snapshot is refused
DEFAULT_POOL_LIMIT = 90.0  # percent: a thin pool fuller than this is not snapshotted


@dataclass(frozen=True)
class BackupSettings:
    dest: Path
    quiesce: QuiesceMode = QuiesceMode.AUTO
    snapshot_size: SizeSpec | None = None
    excludes: frozenset[tuple[str, str]] = frozenset()
    level: int = image.DEFAULT_LEVEL
    dry_run: bool = False
    thin_pool_limit: float = DEFAULT_POOL_LIMIT
    guard: GuardSettings = field(default_factory=GuardSettings.from_environment)
    hooks: Hooks = field(default_factory=Hooks.from_environment)


@dataclass(frozen=True)
class DiskPlan:
    target: str
    volume: LogicalVolume
    snapshot_name: str
    cow_size: int | None  # None for a thin snapshot


@dataclass(frozen=True)
class GuestPlan:
    guest: Guest
    disks: tuple[DiskPlan, ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def total_bytes(self) -> int:
        return sum(d.volume.size for d in self.disks)


@dataclass
class GuestResult:
    name: str
    plan: GuestPlan | None = None
    error: VmsnapError | None = None
    directory: Path | None = None
    window: Window | None = None
    disks: list[DiskResult] = field(default_factory=list)
    domain_xml_sha256: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def _round_up(n: int, extent: int) -> int:
    return -(-n // extent) * extent


def full_cow(origin: int) -> int:
    """COW space that can never overflow: the origin plus room for the
    exception table (16 bytes per 4 KiB chunk, under 1/64) and its header."""
    return origin + origin // 64 + (1 << 20)


def _wanted(share: SizeSpec, origin: int) -> int:
    if share.percent is not None and share.percent >= 100:
        return full_cow(origin)  # "100%": never overflow
    return share.for_origin(origin)


def cow_sizes(
    origins: list[int], *, free: int, extent: int, spec: SizeSpec | None, vg: str
) -> list[int]:
    """COW sizes for thick origins in one VG, checked against its free space.

    Explicit ``--snapshot-size``: exactly that.  Default: 20% of each origin,
    shrunk to fit the free space but never below 5% of the origin.
    """
    share = spec or SizeSpec(percent=DEFAULT_SNAPSHOT_SHARE)
    sizes = [_round_up(max(_wanted(share, o), extent), extent) for o in origins]
    if sum(sizes) <= free:
        return sizes
    needed = human_size(sum(sizes))
    if spec is not None:
        raise NoSpaceError(
            f"volume group {vg} has {human_size(free)} free, snapshots need {needed}",
            hint="free space in the VG or pass a smaller --snapshot-size",
        )
    scale = free / sum(sizes)
    scaled = [(int(s * scale) // extent) * extent for s in sizes]
    if any(
        s < max(extent, o * MIN_SNAPSHOT_SHARE / 100) for s, o in zip(scaled, origins, strict=True)
    ):
        raise NoSpaceError(
            f"volume group {vg} has {human_size(free)} free, too little for snapshots "
            f"of {human_size(sum(origins))} of volumes (want {needed})",
            hint="free space in the VG or pass --snapshot-size",
        )
    return scaled


def _select_disks(
    guest: Guest, excludes: frozenset[tuple[str, str]]
) -> tuple[list[Disk], list[tuple[str, str]]]:
    chosen: list[Disk] = []
    skipped: list[tuple[str, str]] = []
    targets = {d.target for d in guest.disks}
    unknown = sorted(t for d, t in excludes if d == guest.name and t not in targets)
    if unknown:
        raise UsageError(f"no disk {', '.join(unknown)} to --exclude")
    for disk in guest.disks:
        if (guest.name, disk.target) in excludes:
            skipped.append((disk.target, "excluded"))
        elif disk.skippable:
            skipped.append((disk.target, disk.reason or disk.spec.device))
        elif disk.volume is None:
            raise UnsupportedDiskError(
                f"disk {disk.target} ({disk.spec.source or 'no source'}) "
                f"cannot be snapshotted: {disk.reason}",
                hint=f"--exclude {guest.name}:{disk.target} backs up the rest",
            )
        else:
            lvm.check_snapshottable(disk.volume)
            chosen.append(disk)
    if not chosen:
        raise UnsupportedDiskError("no LV disks to back up")
    return chosen, skipped


def check_thin_pools(disks: list[Disk], limit: float) -> None:
    """A full thin pool stops the live guest, not only the backup: refuse to
    add a snapshot to a pool whose data or metadata is past ``limit`` percent."""
    pools = {d.pool.full_name: d.pool for d in disks if d.pool is not None}
    for pool in pools.values():
        for what, fill in (("data", pool.data_percent), ("metadata", pool.metadata_percent)):
            if fill is not None and fill > limit:
                raise NoSpaceError(
                    f"thin pool {pool.full_name} {what} is {fill:.1f}% full (limit {limit:g}%)",
                    hint="grow the pool (lvextend) or pass a higher --thin-pool-limit",
                )


def _plan_sizes(disks: list[Disk], spec: SizeSpec | None) -> dict[str, int]:
    by_vg: dict[str, list[LogicalVolume]] = {}
    for disk in disks:
        assert disk.volume is not None
        if not disk.volume.is_thin:
            by_vg.setdefault(disk.volume.vg, []).append(disk.volume)
    sizes: dict[str, int] = {}
    for vg_name, volumes in by_vg.items():
        vg = lvm.volume_group(vg_name)
        planned = cow_sizes(
            [v.size for v in volumes], free=vg.free, extent=vg.extent_size, spec=spec, vg=vg_name
        )
        sizes.update({v.full_name: s for v, s in zip(volumes, planned, strict=True)})
    return sizes


def plan_guest(
    guest: Guest, settings: BackupSettings, run_id: str, kind: str = "vmsnap"
) -> GuestPlan:
    chosen, skipped = _select_disks(guest, settings.excludes)
    check_thin_pools(chosen, settings.thin_pool_limit)
    sizes = _plan_sizes(chosen, settings.snapshot_size)
    plans = []
    for disk in chosen:
        volume = disk.volume
        assert volume is not None
        name = lvm.snapshot_name(volume.vg, volume.name, run_id, kind)
        plans.append(DiskPlan(disk.target, volume, name, sizes.get(volume.full_name)))
    return GuestPlan(guest=guest, disks=tuple(plans), skipped=tuple(skipped))


def new_run_id() -> str:
    return secrets.token_hex(4)


def manifest(result: GuestResult, conn_host: str, created: float) -> dict[str, Any]:
    assert result.plan is not None
    assert result.window is not None
    guest, window = result.plan.guest, result.window
    return {
        "format": "vmsnap-backup",
        "format_version": FORMAT_VERSION,
        "vmsnap_version": __version__,
        "host": conn_host,
        "domain": {
            "name": guest.name,
            "uuid": guest.uuid,
            "hypervisor": guest.hypervisor,
            "xml_sha256": result.domain_xml_sha256,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "quiesce": {
            "requested": str(window.requested),
            "mode": window.used,
            "state_before": window.state_before,
            "window_seconds": round(window.seconds, 3),
            "frozen_filesystems": window.frozen_filesystems,
            "note": window.note,
        },
        "disks": [
            {
                "target": d.target,
                "volume": d.volume,
                "size": d.size,
                "chunk_sha256": d.chunk_sha256,
                "image": d.image,
                "compressed_size": d.compressed_size,
                "snapshot": {
                    "kind": d.snapshot_kind,
                    "size": d.snapshot_size,
                    "peak_fill_percent": d.peak_fill_percent,
                    "extended": d.extended,
                },
            }
            for d in result.disks
        ],
        "skipped": [{"target": t, "reason": r} for t, r in result.plan.skipped],
    }


@contextmanager
def _staging(
    settings: BackupSettings, guest: str, stamp: str, journal: Journal | None
) -> Iterator[Path]:
    """A fresh ``.partial`` folder, in the journal, removed unless published."""
    store.remove_partials(store.guest_dir(settings.dest, guest))
    staging = store.create_staging(settings.dest, guest, stamp)
    if journal is not None:
        journal.note_staging(staging)
    try:
        yield staging
    finally:
        if staging.exists():
            store.discard(staging)
        if journal is not None:
            journal.forget_staging(staging)


@contextmanager
def guest_snapshots(
    dom: Domain,
    plan: GuestPlan,
    mode: QuiesceMode,
    *,
    journal: Journal | None,
    uri: str,
    tags: tuple[str, ...],
    scope: Scope = hooks.NO_HOOKS,
    keep: bool = False,
) -> Iterator[tuple[Window, list[LogicalVolume]]]:
    """All of a guest's snapshots, taken in one quiesce window that holds nothing
    else; the guest is released before the body runs, and every snapshot is
    removed when it ends, however it ends; with ``keep``, only if the body
    fails.  Backup, clone and checkpoint use this.  The pre-quiesce hooks run
    first (one failing stops here, before any snapshot), the post-snapshot
    hooks once the guest is released."""
    scope = scope.bind(
        VMSNAP_DOMAIN=dom.name,
        VMSNAP_DOMAIN_UUID=dom.uuid,
        VMSNAP_VOLUMES=" ".join(d.volume.path for d in plan.disks),
    )
    scope.run(hooks.PRE_QUIESCE, VMSNAP_QUIESCE=str(mode))
    with ExitStack() as snapshots:
        with quiesced(dom, mode, journal, uri) as window:
            snaps = [
                snapshots.enter_context(lvm.snapshot(d.volume, d.snapshot_name, d.cow_size, tags))
                for d in plan.disks
            ]
            faults.point("window")
        faults.point("snapshotted")
        log.info(
            "%s: snapshots taken, quiesce %s for %.2f s", dom.name, window.used, window.seconds
        )
        scope.run(
            hooks.POST_SNAPSHOT,
            VMSNAP_QUIESCE=window.used,
            VMSNAP_SNAPSHOTS=" ".join(s.path for s in snaps),
        )
        yield window, snaps
        if keep:
            snapshots.pop_all()


def run_guest(
    conn: Connection,
    result: GuestResult,
    settings: BackupSettings,
    progress: Progress,
    run_id: str,
    journal: Journal | None = None,
    scope: Scope = hooks.NO_HOOKS,
) -> None:
    """Back up one planned guest, filling in ``result`` as it goes (so that a
    published backup is on record even if removing a snapshot fails after)."""
    plan = result.plan
    assert plan is not None
    dom = conn.domain(plan.guest.name)
    created = time.time()
    tags = (lvm.TAG, f"{lvm.TAG}-run-{run_id}")
    with _staging(settings, plan.guest.name, store.timestamp(created), journal) as staging:
        domain_xml = dom.definition().encode()
        store.write_file(staging / store.DOMAIN_XML, domain_xml)
        result.domain_xml_sha256 = hashlib.sha256(domain_xml).hexdigest()
        with guest_snapshots(
            dom,
            plan,
            settings.quiesce,
            journal=journal,
            uri=conn.uri,
            tags=tags,
            scope=scope.bind(VMSNAP_BACKUP_DIR=str(staging)),
        ) as (window, snaps):
            result.window = window
            progress.job(dom.name, plan.total_bytes)
            for disk_plan, snap in zip(plan.disks, snaps, strict=True):
                result.disks.append(
                    stream_snapshot(
                        disk_plan.target,
                        disk_plan.volume,
                        snap,
                        staging,
                        level=settings.level,
                        progress=progress,
                        guard_settings=settings.guard,
                    )
                )
            progress.job_done()
            document = seal(manifest(result, conn.hostname, created))
            store.write_json(staging / store.MANIFEST, document)
            faults.point("publishing")
            result.directory = store.publish(staging)


def backup(
    conn: Connection,
    names: list[str] | None,
    settings: BackupSettings,
    progress: Progress,
) -> list[GuestResult]:
    """Back up the named guests (all when ``names`` is None), one after another.

    One guest's failure is recorded in its result and does not stop the others.
    """
    conn.require_local()
    store.check_destination(settings.dest)
    domains = [conn.domain(n) for n in names] if names is not None else conn.domains()
    unknown = {d for d, _t in settings.excludes} - {d.name for d in domains}
    if unknown:
        raise UsageError(
            f"--exclude names guests that are not backed up: {', '.join(sorted(unknown))}"
        )
    run_id = new_run_id()
    with run_lock():
        if settings.dry_run:
            inventory = Inventory.load()
            return [
                _backup_one(conn, d.name, inventory, settings, progress, run_id, None)
                for d in domains
            ]
        left = cleanup.cleanup()
        inventory = Inventory.load()
        scope = settings.hooks.scope(
            VMSNAP_COMMAND="backup", VMSNAP_RUN_ID=run_id, VMSNAP_DEST=str(settings.dest)
        )
        scope.run(hooks.JOB_START)
        run_journal = Journal.start(carry=left.unresolved)
        status = "interrupted"
        try:
            results = [
                _backup_one(conn, d.name, inventory, settings, progress, run_id, run_journal, scope)
                for d in domains
            ]
            status = "ok" if all(r.ok for r in results) else "failed"
            return results
        finally:
            run_journal.close()
            scope.run(hooks.JOB_END, VMSNAP_STATUS=status)


def _backup_one(
    conn: Connection,
    name: str,
    inventory: Inventory,
    settings: BackupSettings,
    progress: Progress,
    run_id: str,
    journal: Journal | None,
    scope: Scope = hooks.NO_HOOKS,
) -> GuestResult:
    result = GuestResult(name=name)
    try:
        result.plan = plan_guest(describe(conn.domain(name), inventory, conn), settings, run_id)
        if not settings.dry_run:
            run_guest(conn, result, settings, progress, run_id, journal, scope)
    except Interrupted:
        raise
    except VmsnapError as exc:
        result.error = exc
    except OSError as exc:
        result.error = DestinationError(str(exc))
    if not settings.dry_run:
        _announce(scope, result)
    return result


def _announce(scope: Scope, result: GuestResult) -> None:
    """backup-end or backup-abort: they never change the result."""
    guest = scope.bind(VMSNAP_DOMAIN=result.name)
    if result.plan is not None:
        guest = guest.bind(VMSNAP_DOMAIN_UUID=result.plan.guest.uuid)
    if result.error is None:
        guest.run(hooks.BACKUP_END, VMSNAP_BACKUP_DIR=str(result.directory))
    else:
        guest.run(hooks.BACKUP_ABORT, VMSNAP_ERROR=str(result.error))


def exit_code(results: list[GuestResult]) -> ExitCode:
    """0 all good; 1 when some guests failed (12 if one left something behind);
    when all failed, the worst of their errors (the first, between equals)."""
    failed = [r.error.exit_code for r in results if r.error is not None]
    if len(failed) < len(results):  # some guests were backed up
        failed = [c if c == ExitCode.LEFT_BEHIND else ExitCode.PARTIAL for c in failed]
    return worst(*failed)
