"""Backup orchestration: plan every guest, then for each one quiesce, snapshot,
release, stream, publish, and remove the snapshots on every way out."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

from vmsnap import hooks, image
from vmsnap.discover import REASONS, Inventory, describe
from vmsnap.errors import DestinationError, ExitCode, Interrupted, UsageError, VmsnapError, worst
from vmsnap.guard import GuardSettings
from vmsnap.hooks import Hooks, Scope
from vmsnap.job import run_job
from vmsnap.journal import Journal
from vmsnap.lock import run_lock
from vmsnap.models import Guest, QuiesceMode, SizeSpec
from vmsnap.progress import Progress
from vmsnap.quiesce import Window
from vmsnap.repo import jobs, locks, refs
from vmsnap.repo import manifest as rmanifest
from vmsnap.repo.index import ChunkIndex, open_index
from vmsnap.repo.location import Dest, open_dest
from vmsnap.repo.manifest import RepoDisk
from vmsnap.repo.refs import BackupRef
from vmsnap.repo.repository import Repository
from vmsnap.repo.writer import Counts
from vmsnap.snapshots import (
    DEFAULT_POOL_LIMIT,
    GuestPlan,
    guest_snapshots,
    new_run_id,
    plan_guest,
    run_tags,
)
from vmsnap.snapstream import store_snapshot
from vmsnap.virt import Connection, Domain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackupSettings:
    dest: Dest
    hooks: Hooks  # the CLI reads --hooks-dir and the environment; hooks.NO_HOOKS for none
    quiesce: QuiesceMode = QuiesceMode.AUTO
    snapshot_size: SizeSpec | None = None
    excludes: frozenset[tuple[str, str]] = frozenset()
    exclude_guests: frozenset[str] = frozenset()  # left out of --all
    level: int = image.DEFAULT_LEVEL
    dry_run: bool = False
    thin_pool_limit: float = DEFAULT_POOL_LIMIT
    guard: GuardSettings = field(default_factory=GuardSettings)


@dataclass
class GuestResult:
    name: str
    plan: GuestPlan | None = None
    error: VmsnapError | None = None
    backup: BackupRef | None = None  # the published backup
    window: Window | None = None
    disks: list[RepoDisk] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)  # read, new, deduplicated
    skipped: str | None = None  # why --all left this guest out (not a failure)

    @property
    def ok(self) -> bool:
        return self.error is None


def _plan(guest: Guest, settings: BackupSettings, run_id: str) -> GuestPlan:
    return plan_guest(
        guest,
        run_id=run_id,
        excludes=settings.excludes,
        snapshot_size=settings.snapshot_size,
        thin_pool_limit=settings.thin_pool_limit,
    )


def run_guest(run: _Run, dom: Domain, result: GuestResult) -> None:
    """Back up one planned guest, filling in ``result`` as it goes (so that a
    published backup is on record even if removing a snapshot fails after)."""
    plan, settings, progress = result.plan, run.settings, run.progress
    assert plan is not None
    assert run.repo is not None
    assert run.index is not None
    created = time.time()
    ref = jobs.next_ref(run.repo, plan.guest.name, created)  # what hooks and messages name
    domain_xml = dom.definition().encode()
    with guest_snapshots(
        dom,
        plan,
        settings.quiesce,
        journal=run.journal,
        uri=run.conn.uri,
        tags=run_tags(run.run_id),
        scope=run.scope.bind(VMSNAP_BACKUP_DIR=ref.label),
    ) as (window, snaps):
        result.window = window
        progress.job(dom.name, plan.total_bytes)
        for disk_plan, snap in zip(plan.disks, snaps, strict=True):
            disk, counts = store_snapshot(
                run.repo,
                run.index,
                disk_plan.target,
                disk_plan.volume,
                snap,
                level=settings.level,
                progress=progress,
                guard_settings=settings.guard,
            )
            result.disks.append(disk)
            result.counts = result.counts + counts
        progress.job_done()
        if run.held is not None:
            run.held.check()  # a lock that may look stale elsewhere: publish nothing
        result.backup = _publish(result, ref, domain_xml, run.conn.hostname, created)


def _publish(
    result: GuestResult, ref: BackupRef, domain_xml: bytes, host: str, created: float
) -> BackupRef:
    """Write domain.xml, then the manifest: the backup exists from then on."""
    assert result.plan is not None
    assert result.window is not None
    guest = result.plan.guest
    part = rmanifest.GuestPart(
        domain=rmanifest.Domain(
            guest.name, guest.uuid, guest.hypervisor, hashlib.sha256(domain_xml).hexdigest()
        ),
        quiesce=rmanifest.quiesce_doc(result.window),
        skipped=tuple(result.plan.skipped),
    )
    m = rmanifest.new(guest.name, "guest", tuple(result.disks), created, guest=part, host=host)
    return jobs.publish_at(ref, m, {refs.DOMAIN_XML: domain_xml})


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
    repo = open_dest(settings.dest)  # a repository (15), of a version this vmsnap reads (16)
    domains = _domains(conn, names, settings.exclude_guests)
    unknown = {d for d, _t in settings.excludes} - {d.name for d in domains}
    if unknown:
        raise UsageError(
            f"--exclude names guests that are not backed up: {', '.join(sorted(unknown))}"
        )
    run_id = new_run_id()
    run = _Run(conn, settings, progress, run_id, every_guest=names is None, repo=repo)
    if settings.dry_run:
        with run_lock():
            run.inventory = Inventory.load()
            return [_backup_one(run, d) for d in domains]
    run.scope = settings.hooks.scope(
        VMSNAP_COMMAND="backup", VMSNAP_RUN_ID=run_id, VMSNAP_DEST=repo.location
    )
    with (
        run_job(run.scope) as job,
        locks.shared(repo, "backup") as held,
        open_index(repo) as run.index,
    ):
        run.held = held
        run.journal, run.inventory = job.journal, Inventory.load()
        results = [_backup_one(run, d) for d in domains]
        job.failed = not all(r.ok for r in results)
    return results


def _domains(conn: Connection, names: list[str] | None, left_out: frozenset[str]) -> list[Domain]:
    """The named guests, or every guest (``--all``); a guest to leave out must exist."""
    if names is not None:
        return [conn.domain(n) for n in names]
    every = conn.domains()
    unknown = left_out - {d.name for d in every}
    if unknown:
        raise UsageError(
            f"--exclude-guest names no guest libvirt knows: {', '.join(sorted(unknown))}",
            hint="a [guests.NAME] skip of the configuration file counts too",
        )
    return every


@dataclass
class _Run:
    """What every guest of one backup run shares."""

    conn: Connection
    settings: BackupSettings
    progress: Progress
    run_id: str
    every_guest: bool  # --all: guests with no LV disk are left out, not failed
    repo: Repository | None = None
    index: ChunkIndex | None = None
    held: locks.Held | None = None  # the repository's shared lock
    inventory: Inventory | None = None
    journal: Journal | None = None
    scope: Scope = hooks.NO_SCOPE


NEVER_LV = frozenset(REASONS)  # disk types that cannot be an LV: file, network, dir


def _without_lv(guest: Guest) -> str | None:
    """Why ``--all`` leaves a guest out: none of its disks is or could be an LV
    (no disks, or only files, network disks, CD-ROMs).  A block device that is
    not an LV still fails: it may be an LV that is missing."""
    disks = [d for d in guest.disks if not d.skippable]
    if any(d.volume is not None or d.spec.source_type not in NEVER_LV for d in disks):
        return None
    kinds = sorted({d.reason or d.spec.source_type for d in disks})
    return f"no LV disk ({', '.join(kinds) or 'no disks'})"


def _backup_one(run: _Run, dom: Domain) -> GuestResult:
    result = GuestResult(name=dom.name)
    settings = run.settings
    if run.every_guest and dom.name in settings.exclude_guests:
        result.skipped = "excluded"
        return result
    try:
        assert run.inventory is not None
        guest = describe(dom, run.inventory, run.conn)
        result.skipped = _without_lv(guest) if run.every_guest else None
        if result.skipped is not None:
            log.info("%s: left out: %s", dom.name, result.skipped)
            return result
        result.plan = _plan(guest, settings, run.run_id)
        if not settings.dry_run:
            run_guest(run, dom, result)
    except Interrupted:
        raise
    except VmsnapError as exc:
        result.error = exc
    except OSError as exc:
        result.error = DestinationError(str(exc))
    if not settings.dry_run:
        _announce(run.scope, result)
    return result


def _announce(scope: Scope, result: GuestResult) -> None:
    """backup-end or backup-abort: they never change the result."""
    guest = scope.bind(VMSNAP_DOMAIN=result.name)
    if result.plan is not None:
        guest = guest.bind(VMSNAP_DOMAIN_UUID=result.plan.guest.uuid)
    if result.error is None:
        assert result.backup is not None
        guest.run(hooks.BACKUP_END, VMSNAP_BACKUP_DIR=result.backup.label)
    else:
        guest.run(hooks.BACKUP_ABORT, VMSNAP_ERROR=str(result.error))


def exit_code(results: list[GuestResult]) -> ExitCode:
    """0 all good; 1 when some guests failed (12 if one left something behind);
    when all failed, the worst of their errors (the first, between equals)."""
    tried = [r for r in results if r.skipped is None]
    failed = [r.error.exit_code for r in tried if r.error is not None]
    if len(failed) < len(tried):  # some guests were backed up
        failed = [c if c == ExitCode.LEFT_BEHIND else ExitCode.PARTIAL for c in failed]
    return worst(*failed)
