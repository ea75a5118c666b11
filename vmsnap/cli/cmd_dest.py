"""The repository reading commands: vmsnap verify, prune and backups."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vmsnap.cli import jsondoc
from vmsnap.cli.cmd_repo import RepoOpt
from vmsnap.cli.core import catalog, retention, verify
from vmsnap.cli.options import JsonOpt, ProgressOpt, dry_run, keep
from vmsnap.cli.session import Session, done, say_error
from vmsnap.cli.text import ago, print_gc, print_prune
from vmsnap.errors import ExitCode, worst
from vmsnap.models import human_size

if TYPE_CHECKING:
    from vmsnap.repo.refs import BackupRef

DEFAULT_SAMPLE = 32  # chunks verify decodes without --read-data (a constant here: no import)
GuestsArg = Annotated[list[str] | None, typer.Argument(metavar="[GUEST]...")]

# ---------------------------------------------------------------- verify

TargetsArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[PATH|GUEST]...",
        help="With --dest, guest names (default: every guest); else local paths: a repository, "
        "REPO/backups/GUEST or a backup folder REPO/backups/GUEST/TIME.",
    ),
]
SampleOpt = Annotated[
    int,
    typer.Option(
        "--sample",
        min=0,
        metavar="N",
        help="Decode N chunks chosen at random (without --read-data).",
    ),
]
ReadDataOpt = Annotated[
    bool, typer.Option("--read-data", help="Decode every chunk, not only a sample.")
]


def _verify_refs(session: Session, dest: str | None, targets: list[str]) -> list[BackupRef]:
    """--dest REPO [GUEST]..., else PATH..., else the configuration file's dest."""
    if dest is not None or not targets:
        repo = catalog.open_repository(session.repository(dest))
        return verify.backups_of(repo, targets or None)
    return verify.backups_at([Path(t) for t in targets])


def _print_verify(run: verify.VerifyRun) -> None:
    for r in run.reports:
        print(f"{r.ref.label}: {r.status}  {', '.join(r.disks) or '-'}")
        for line in r.problems:
            print(f"  {line}")
    good = sum(r.ok for r in run.reports)
    how = "every chunk" if run.read_data else "a sample"
    print(
        f"{len(run.reports)} backup(s) verified: {good} OK, {len(run.reports) - good} failed; "
        f"{run.chunks} chunk(s) present, {run.decoded} decoded ({how})"
    )


def verify_cmd(
    ctx: typer.Context,
    targets: TargetsArg = None,
    dest: RepoOpt = None,
    read_data: ReadDataOpt = False,
    sample: SampleOpt = DEFAULT_SAMPLE,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check backups: every chunk they need exists, the manifest's seal and
    domain.xml hold, and a sample of chunks (every chunk with --read-data)
    decodes to its digest.

    Each backup is OK, CORRUPT or MISSING (a chunk is gone); a bad chunk is
    named with every backup that uses it.  The result is recorded in the
    backup's verified.json.  Needs neither libvirt nor LVM.
    """
    session = Session.of(ctx)
    found = _verify_refs(session, dest, targets or [])
    run = verify.verify(
        found, read_data=read_data, sample=sample, progress=session.progress(progress)
    )
    for repo, bad in run.bad_chunks:  # once each, naming every backup that uses it
        say_error(verify.chunk_problem(repo, bad))
    for line in (p for r in run.reports for p in r.problems):
        say_error(line)
    if as_json:
        jsondoc.emit(jsondoc.verify_run(run))
    else:
        _print_verify(run)
    done(verify.exit_code(run))


# ---------------------------------------------------------------- prune


def prune_errors(plans: list[retention.GuestPrune]) -> ExitCode:
    """Say every error of the plans (stderr and the log); DESTINATION if any."""
    for line in (e for p in plans for e in p.errors):
        say_error(line)
    return ExitCode.DESTINATION if any(p.errors for p in plans) else ExitCode.OK


def prune_cmd(
    ctx: typer.Context,
    guests: GuestsArg = None,
    dest: RepoOpt = None,
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
    dry_run: Annotated[
        bool, dry_run("Say which backups would go and what the collection would free.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete the backups a retention policy does not keep, then the chunks no
    remaining backup uses (garbage collection).

    Only good backups (a sealed manifest, no failed verify) count; the newest of
    each guest is always kept; anything else is left alone.  The collection also
    removes what killed runs left: temporary objects and never-published backups
    more than a day old.
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
    repo = catalog.open_repository(session.repository(dest))
    run = retention.prune(repo, guests or None, policy, dry_run=dry_run)
    if as_json:
        jsondoc.emit(jsondoc.prune_run(dry_run, policy, run, time.time()))
    else:
        print_prune(run.plans, dry_run)
        print_gc(run.gc)
    code = prune_errors(run.plans)
    if run.locked is not None:  # the backups went; their chunks wait for the next prune
        say_error(run.locked)
        code = worst(code, ExitCode.LOCKED)
    done(code)


# ---------------------------------------------------------------- backups


def _print_backups(found: list[catalog.GuestBackups], now: float) -> None:
    print(
        f"{'GUEST':<16} {'BACKUP':<18} {'AGE':>5} {'DISKS':<10} {'SIZE':>9} {'NEW':>9} "
        f"{'STORED':>9} {'UNIQUE':>9}  VERIFIED"
    )
    for g in found:
        for b in reversed(g.backups):
            print(f"{g.guest:<16} {b.stamp:<18} " + _backup_columns(b, now))


def _backup_columns(b: catalog.Stored, now: float) -> str:
    m = b.manifest
    if m is None:
        return f"BAD: {b.problem}"
    age = ago(now - b.created.timestamp()) if b.created else "?"
    disks = ",".join(d.target for d in m.disks)
    sizes = (m.total_size, m.new_bytes, m.stored_bytes, b.unique_bytes)
    checked = f"{b.verified.status} {b.verified.at}" if b.verified else "never"
    return (
        f"{age:>5} {disks:<10} " + " ".join(f"{human_size(n):>9}" for n in sizes) + f"  {checked}"
    )


def backups_cmd(
    ctx: typer.Context,
    guests: GuestsArg = None,
    dest: RepoOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What the repository holds: each guest's backups, newest first, with their
    disks, age, sizes and last verify result.

    SIZE is the volumes' logical size; NEW the bytes this backup stored first
    and STORED their compressed size; UNIQUE the stored bytes of the chunks no
    other backup uses (what pruning it alone would free).
    """
    repo = catalog.open_repository(Session.of(ctx).repository(dest))
    found = catalog.scan(repo, guests or None)
    now = time.time()
    if as_json:
        jsondoc.emit([jsondoc.guest_backups(g, now) for g in found])
    else:
        _print_backups(found, now)
