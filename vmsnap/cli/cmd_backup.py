"""vmsnap backup (with --prune), and vmsnap cleanup."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from vmsnap.cli import jsondoc
from vmsnap.cli.cmd_dest import prune_errors
from vmsnap.cli.core import backup, cleanup, guard, retention, snapshots, virt
from vmsnap.cli.options import ConnectOpt, DestOpt, DomainsArg, JsonOpt, dry_run
from vmsnap.cli.session import Session, done, say_error
from vmsnap.cli.text import print_prune
from vmsnap.errors import ExitCode, UsageError, worst
from vmsnap.lock import run_lock
from vmsnap.models import DEFAULT_LEVEL, QuiesceMode, SizeSpec, human_size


def _parse_excludes(items: list[str]) -> frozenset[tuple[str, str]]:
    pairs = set()
    for item in items:
        domain, sep, target = item.rpartition(":")
        if not sep or not domain or not target:
            raise UsageError(f"bad --exclude {item!r}: use DOMAIN:TARGET, e.g. web01:xvdb")
        pairs.add((domain, target))
    return frozenset(pairs)


def _print_result(result: backup.GuestResult, dry_run: bool) -> None:
    if result.skipped is not None:
        print(f"{result.name}: left out: {result.skipped}")
        return
    if result.plan and dry_run and result.ok:
        print(f"{result.name}: would back up")
        for d in result.plan.disks:
            cow = f"COW {human_size(d.cow_size)}" if d.cow_size else "thin snapshot"
            print(f"  {d.target}  {d.volume.full_name}  {human_size(d.volume.size)}  {cow}")
        for target, reason in result.plan.skipped:
            print(f"  {target}  skipped: {reason}")
        return
    if result.backup:
        c = result.counts
        mode = result.window.used if result.window else "?"
        print(
            f"{result.name}: OK  {result.backup.label}  {len(result.disks)} disk(s), "
            f"read {human_size(c.read)}: new {human_size(c.new)} "
            f"(stored {human_size(c.stored)}), dedup {human_size(c.deduplicated)}, "
            f"quiesce {mode}"
        )
    if result.error:
        print(f"{result.name}: FAILED  {result.error}")


QuiesceBackupOpt = Annotated[
    QuiesceMode | None,
    typer.Option("--quiesce", help="auto (the default): agent freeze, else pause a running guest."),
]
SnapshotSizeBackupOpt = Annotated[
    str | None,
    typer.Option(
        "--snapshot-size",
        metavar="SIZE|PCT%",
        help="COW snapshot size per thick LV (default: 20% of the origin, "
        "shrunk to fit the VG's free space).",
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude", metavar="DOMAIN:TARGET", help="Leave a disk out (repeatable)."),
]
ExcludeGuestOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude-guest",
        metavar="DOMAIN",
        help="With --all, leave a whole guest out (repeatable).",
    ),
]
LevelOpt = Annotated[
    int | None, typer.Option("--level", metavar="N", min=1, max=19, help="zstd level (default: 3).")
]
PoolLimitOpt = Annotated[
    float | None,
    typer.Option(
        "--thin-pool-limit",
        metavar="PCT",
        min=1,
        max=100,
        help="Refuse to snapshot into a thin pool fuller than this, data or metadata "
        "(default: 90).",
    ),
]
ProgressBackupOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Progress bars (default: bars on a terminal, plain lines otherwise).",
    ),
]
PruneOpt = Annotated[
    bool,
    typer.Option(
        "--prune", help="Then prune each guest backed up, by the configuration file's [retention]."
    ),
]


def backup_cmd(
    ctx: typer.Context,
    domains: DomainsArg = None,
    all_guests: Annotated[bool, typer.Option("--all", help="Back up every guest.")] = False,
    dest: DestOpt = None,
    connect: ConnectOpt = None,
    quiesce: QuiesceBackupOpt = None,
    snapshot_size: SnapshotSizeBackupOpt = None,
    exclude: ExcludeOpt = None,
    exclude_guest: ExcludeGuestOpt = None,
    level: LevelOpt = None,
    thin_pool_limit: PoolLimitOpt = None,
    dry_run: Annotated[bool, dry_run("Plan and check; change nothing.")] = False,
    progress: ProgressBackupOpt = None,
    prune: PruneOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Snapshot each guest's LVs in one short quiesce window, then store them in the repository.

    Only the 4 MiB chunks the repository does not hold yet are compressed and written.
    """
    if domains and all_guests:
        raise UsageError("name the guests to back up or pass --all, not both")
    if not domains and not all_guests:
        raise UsageError("name the guests to back up, or pass --all")
    if exclude_guest and not all_guests:
        raise UsageError("--exclude-guest goes with --all: name the guests to back up instead")
    session = Session.of(ctx)
    cfg = session.config()
    policy = session.configured_policy() if prune else None
    with virt.connection(session.uri(connect)) as conn:
        names = domains or [d.name for d in conn.domains()]
        settings = backup.BackupSettings(
            dest=session.dest(dest),
            quiesce=quiesce or cfg.quiesce or QuiesceMode.AUTO,
            snapshot_size=SizeSpec.parse(snapshot_size) if snapshot_size else cfg.snapshot_size,
            excludes=_parse_excludes(exclude or []) | cfg.excludes_for(set(names)),
            # --exclude-guest and the file's [guests.NAME] skip = true apply to --all only
            exclude_guests=frozenset(exclude_guest or ()) | cfg.skip_guests
            if all_guests
            else frozenset(),
            level=level or cfg.level or DEFAULT_LEVEL,
            dry_run=dry_run,
            thin_pool_limit=thin_pool_limit or cfg.thin_pool_limit or snapshots.DEFAULT_POOL_LIMIT,
            hooks=session.hooks(),
            guard=guard.GuardSettings.from_environment(),
        )
        results = backup.backup(
            conn, domains or None, settings, session.progress(False if dry_run else progress)
        )
    pruned = _prune_after(settings, results, policy)
    _report(session, results, pruned, dry_run, as_json)
    done(worst(backup.exit_code(results), prune_errors(list(pruned.values()))))


def _report(
    session: Session,
    results: list[backup.GuestResult],
    pruned: dict[str, retention.GuestPrune],
    dry_run: bool,
    as_json: bool,
) -> None:
    for failed in (r for r in results if r.error is not None):
        assert failed.error is not None
        session.error(f"{failed.name}: {failed.error}", failed.error)
    if as_json:
        now = time.time()
        jsondoc.emit([jsondoc.backup_result(r, pruned.get(r.name), now) for r in results])
        return
    for result in results:
        _print_result(result, dry_run)
    print_prune(list(pruned.values()), dry_run)


def _prune_after(
    settings: backup.BackupSettings,
    results: list[backup.GuestResult],
    policy: retention.Policy | None,
) -> dict[str, retention.GuestPrune]:
    """``backup --prune``: each guest that was backed up (or, with --dry-run, that
    has backups), pruned by the configured policy."""
    if policy is None:
        return {}
    names = [
        r.name
        for r in results
        if r.ok and r.skipped is None and (r.backup is not None or settings.dry_run)
    ]
    if not names:
        return {}
    plans = retention.prune(settings.dest, names, policy, dry_run=settings.dry_run)
    return dict(zip(names, plans, strict=True))


def cleanup_cmd(
    ctx: typer.Context,
    connect: ConnectOpt = None,
    dry_run: Annotated[bool, dry_run("Say what would be done.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Undo what a dead run left: resume/thaw its guests, remove its snapshots and
    unpublished folders and the new LVs it had not finished.  Every backup, restore
    and clone does this first, under the lock."""
    session = Session.of(ctx)
    with run_lock():
        report = cleanup.cleanup(dry_run=dry_run, default_uri=session.uri(connect))
    if as_json:
        jsondoc.emit(jsondoc.cleanup_report(report, dry_run))
    else:
        _print_cleanup(report, dry_run)
    for problem in report.problems:
        say_error(problem)
    done(ExitCode.LEFT_BEHIND if report.problems else ExitCode.OK)


def _print_cleanup(report: cleanup.CleanupReport, dry_run: bool) -> None:
    verb = "would " if dry_run else ""
    done_items = (
        ("resume guest", report.resumed),
        ("thaw guest", report.thawed),
        ("remove snapshot", report.snapshots),
        ("remove unpublished", report.partials),
        ("remove unfinished LV", report.volumes),
    )
    for action, items in done_items:
        for item in items:
            print(f"{verb}{action} {item}")
    if report.nothing and not report.problems:
        print("nothing to clean up")
