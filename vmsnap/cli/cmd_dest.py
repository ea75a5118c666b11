"""The destination commands: vmsnap verify, prune and backups."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from vmsnap.cli import jsondoc
from vmsnap.cli.core import catalog, retention, verify
from vmsnap.cli.options import DestOpt, DomainsArg, JsonOpt, ProgressOpt, dry_run, keep
from vmsnap.cli.session import Session, done
from vmsnap.cli.text import ago, print_prune
from vmsnap.errors import ExitCode
from vmsnap.models import human_size

# ---------------------------------------------------------------- verify


def _verify_failures(report: verify.BackupReport) -> list[str]:
    """One line per failure, for stderr (cron mail)."""
    if not report.disks:
        return [] if report.ok else [f"{report.directory}: {report.status}: {report.message}"]
    return [
        f"{report.directory}: {d.target} {d.status}: {d.message}" for d in report.disks if not d.ok
    ]


def _print_verify(report: verify.BackupReport) -> None:
    print(f"{report.directory}: {report.status}  {report.message}")
    for d in report.disks:
        print(f"  {d.target:<6} {d.status:<10} {d.image}" + ("" if d.ok else f"  {d.message}"))


PathsArg = Annotated[
    list[Path],
    typer.Argument(
        metavar="PATH", help="A backup folder, a guest's folder or a whole destination."
    ),
]


def verify_cmd(
    ctx: typer.Context,
    paths: PathsArg,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Decode every image of the backups at PATH and check it against the manifest.

    Each disk is OK, CORRUPT, MISSING or INCOMPLETE; a .partial folder (an
    interrupted run) is an INCOMPLETE backup.  Needs neither libvirt nor LVM.
    """
    reports = verify.verify_paths(paths, Session.of(ctx).progress(progress))
    now = time.time()
    for report in (r for r in reports if r.manifest_ok):
        catalog.record_verified(report.directory, str(report.status), now)
    for line in (line for r in reports for line in _verify_failures(r)):
        print(f"vmsnap: error: {line}", file=sys.stderr)
    if as_json:
        jsondoc.emit([jsondoc.verify_report(r) for r in reports])
    else:
        for report in reports:
            _print_verify(report)
        good = sum(r.ok for r in reports)
        print(f"{len(reports)} backup(s) verified: {good} OK, {len(reports) - good} failed")
    done(verify.exit_code(reports))


# ---------------------------------------------------------------- prune


def prune_exit_code(plans: list[retention.GuestPrune]) -> ExitCode:
    for line in (e for p in plans for e in p.errors):
        print(f"vmsnap: error: {line}", file=sys.stderr)
    return ExitCode.DESTINATION if any(p.errors for p in plans) else ExitCode.OK


def prune_cmd(
    ctx: typer.Context,
    domains: DomainsArg = None,
    dest: DestOpt = None,
    keep_last: Annotated[int | None, keep("--keep-last", "Keep the N newest.")] = None,
    keep_daily: Annotated[
        int | None, keep("--keep-daily", "Keep the newest of each of N UTC days.")
    ] = None,
    keep_weekly: Annotated[
        int | None, keep("--keep-weekly", "Keep the newest of each of N ISO weeks.")
    ] = None,
    keep_monthly: Annotated[
        int | None, keep("--keep-monthly", "Keep the newest of each of N months.")
    ] = None,
    dry_run: Annotated[bool, dry_run("Say what would be removed; remove nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove the backups a retention policy does not keep, and unpublished .partial folders.

    Only good backups (a sealed manifest, no failed verify) count; the newest of
    each guest is always kept; anything else is left alone.
    """
    session = Session.of(ctx)
    policy = session.policy(
        {
            "keep_last": keep_last,
            "keep_daily": keep_daily,
            "keep_weekly": keep_weekly,
            "keep_monthly": keep_monthly,
        }
    )
    plans = retention.prune(session.dest(dest), domains or None, policy, dry_run=dry_run)
    if as_json:
        jsondoc.emit(jsondoc.prune_run(dry_run, policy, plans, time.time()))
    else:
        print_prune(plans, dry_run)
    done(prune_exit_code(plans))


# ---------------------------------------------------------------- backups


def _print_stored(found: list[catalog.GuestFolder], now: float) -> None:
    print(f"{'GUEST':<16} {'BACKUP':<18} {'AGE':>5} {'SIZE':>10} {'STORED':>10}  VERIFIED")
    for g in found:
        for b in reversed(g.backups):
            m = b.manifest
            age = ago(now - b.created.timestamp()) if b.created else "?"
            size = human_size(m.total_size) if m else "?"
            packed = human_size(sum(d.compressed_size for d in m.disks)) if m else "?"
            checked = f"{b.verified.status} {b.verified.at}" if b.verified else "never"
            line = f"{g.guest:<16} {b.directory.name:<18} {age:>5} {size:>10} {packed:>10}  "
            print(line + (checked if m else f"BAD: {b.problem}"))
        for path in g.partials:
            print(f"{g.guest:<16} {path.name}  (unpublished: an interrupted or running backup)")


def backups_cmd(
    ctx: typer.Context,
    domains: DomainsArg = None,
    dest: DestOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What the destination holds: each guest's backups, newest first, with their
    size, age and last verify result."""
    found = catalog.scan(Session.of(ctx).dest(dest), domains or None)
    now = time.time()
    if as_json:
        jsondoc.emit([jsondoc.guest_folder(g, now) for g in found])
    else:
        _print_stored(found, now)
