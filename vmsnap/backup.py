"""Backup orchestration: plan every guest, then for each one quiesce, snapshot,
release, stream, publish, and remove the snapshots on every way out."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmsnap import __version__, faults, hooks, image, store
from vmsnap.discover import Inventory, describe
from vmsnap.errors import DestinationError, Interrupted, UsageError, VmsnapError
from vmsnap.guard import GuardSettings
from vmsnap.hooks import Hooks, Scope
from vmsnap.job import run_job
from vmsnap.journal import Journal
from vmsnap.lock import run_lock
from vmsnap.manifest import seal
from vmsnap.models import QuiesceMode, SizeSpec
from vmsnap.progress import Progress
from vmsnap.quiesce import Window
from vmsnap.snapshots import (
    DEFAULT_POOL_LIMIT,
    GuestPlan,
    guest_snapshots,
    new_run_id,
    plan_guest,
    run_tags,
)
from vmsnap.snapstream import DiskResult, stream_snapshot
from vmsnap.virt import Connection, Domain

log = logging.getLogger(__name__)

FORMAT_VERSION = 2


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


def _plan(
    dom: Domain, inventory: Inventory, conn: Connection, settings: BackupSettings, run_id: str
) -> GuestPlan:
    return plan_guest(
        describe(dom, inventory, conn),
        run_id=run_id,
        excludes=settings.excludes,
        snapshot_size=settings.snapshot_size,
        thin_pool_limit=settings.thin_pool_limit,
    )


def run_guest(
    conn: Connection,
    dom: Domain,
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
    created = time.time()
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
            tags=run_tags(run_id),
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
    if settings.dry_run:
        with run_lock():
            inventory = Inventory.load()
            return [
                _backup_one(conn, d, inventory, settings, progress, run_id, None) for d in domains
            ]
    scope = settings.hooks.scope(
        VMSNAP_COMMAND="backup", VMSNAP_RUN_ID=run_id, VMSNAP_DEST=str(settings.dest)
    )
    with run_job(scope) as job:
        inventory = Inventory.load()
        results = [
            _backup_one(conn, d, inventory, settings, progress, run_id, job.journal, scope)
            for d in domains
        ]
        job.failed = not all(r.ok for r in results)
    return results


def _backup_one(
    conn: Connection,
    dom: Domain,
    inventory: Inventory,
    settings: BackupSettings,
    progress: Progress,
    run_id: str,
    journal: Journal | None,
    scope: Scope = hooks.NO_HOOKS,
) -> GuestResult:
    result = GuestResult(name=dom.name)
    try:
        result.plan = _plan(dom, inventory, conn, settings, run_id)
        if not settings.dry_run:
            run_guest(conn, dom, result, settings, progress, run_id, journal, scope)
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
