"""The command line: parse, build frozen settings, call the core, render.

The only place where errors become exit codes and text reaches the terminal.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vmsnap import __version__, config
from vmsnap.console import close_log_file, make_progress, setup_logging, to_log_file
from vmsnap.errors import ExistsError, ExitCode, Interrupted, LvmError, UsageError, VmsnapError
from vmsnap.hooks import Hooks
from vmsnap.lazy import lazy
from vmsnap.lock import run_lock
from vmsnap.models import (
    DEFAULT_LEVEL,
    FILL_WARNING,
    SHUTDOWN_TIMEOUT,
    Guest,
    QuiesceMode,
    SizeSpec,
    human_size,
)
from vmsnap.progress import Progress
from vmsnap.signals import GATE

if TYPE_CHECKING:
    from vmsnap import (
        backup,
        catalog,
        checkpoint,
        cleanup,
        clone,
        discover,
        imagecmd,
        restore,
        retention,
        snapshots,
        store,
        verify,
        virt,
    )
else:  # each command loads only the modules it uses (see vmsnap/lazy.py)
    backup = lazy("vmsnap.backup")
    catalog = lazy("vmsnap.catalog")
    checkpoint = lazy("vmsnap.checkpoint")
    cleanup = lazy("vmsnap.cleanup")
    clone = lazy("vmsnap.clone")
    discover = lazy("vmsnap.discover")
    imagecmd = lazy("vmsnap.imagecmd")
    restore = lazy("vmsnap.restore")
    retention = lazy("vmsnap.retention")
    snapshots = lazy("vmsnap.snapshots")
    store = lazy("vmsnap.store")
    verify = lazy("vmsnap.verify")
    virt = lazy("vmsnap.virt")

log = logging.getLogger("vmsnap")

EXIT_STATUS = """\b
EXIT STATUS
   0   success
   1   partial: some guests backed up, some failed
   2   usage error
   3   not found (guest, volume, file)
   4   a disk that cannot be snapshotted (not an LV)
   5   a volume group without room for the snapshots
   6   LVM tools missing or an LVM command failed
   7   libvirt connection or call failed
   8   the requested quiesce mode could not be applied
   9   destination missing, unwritable or full
  10   integrity: data does not match its length or checksum
  11   another vmsnap run holds the lock
  12   something left behind (a snapshot, a paused or frozen guest)
  13   a hook vetoed, failed, timed out or was refused as unsafe
  14   a guest, LV or file to create already exists
  70   internal error (a bug: please report it, with --debug output)
 129/130/143  interrupted by SIGHUP/SIGINT/SIGTERM"""

app = typer.Typer(
    help="Back up and clone libvirt guests whose disks are LVM logical volumes.",
    epilog=EXIT_STATUS,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
image_app = typer.Typer(
    help="Stream any block device or file to and from a zstd image.",
    epilog=EXIT_STATUS,
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(image_app, name="image")
checkpoint_app = typer.Typer(
    help="Keep a guest's snapshots across an upgrade; roll back to them or release them.",
    epilog=EXIT_STATUS,
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(checkpoint_app, name="checkpoint")


@dataclass
class _Options:
    debug: bool = False
    quiet: bool = False
    hooks_dir: Path | None = None
    config_file: Path | None = None
    loaded: config.Config | None = None  # read when a command first needs it


OPTIONS = _Options()

ConnectOpt = Annotated[
    str | None,
    typer.Option(
        "--connect",
        "-c",
        metavar="URI",
        help="libvirt URI (default: $LIBVIRT_DEFAULT_URI, else libvirt's default).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
DestOpt = Annotated[
    Path | None,
    typer.Option(
        "--dest",
        metavar="DIR",
        help="Destination folder, which must exist (default: dest in the configuration file).",
    ),
]


def _version(value: bool) -> None:
    if value:
        print(f"vmsnap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output.")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
    version: Annotated[  # noqa: ARG001 - handled by its eager callback
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    hooks_dir: Annotated[
        Path | None,
        typer.Option(
            "--hooks-dir",
            metavar="DIR",
            help="Hooks folder (default: $VMSNAP_HOOKS_DIR, else hooks_dir in the "
            "configuration file, else /etc/vmsnap/hooks.d).",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="Configuration file (default: $VMSNAP_CONFIG, else /etc/vmsnap/vmsnap.toml "
            "if it exists).",
        ),
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            metavar="PATH",
            help="Also append timestamped log lines (INFO and up, errors, exit status) here.",
        ),
    ] = None,
) -> None:
    OPTIONS.debug = debug
    OPTIONS.quiet = quiet
    OPTIONS.hooks_dir = hooks_dir
    OPTIONS.config_file = config_file
    OPTIONS.loaded = None
    setup_logging(2 if debug else (-1 if quiet else verbose), log_file=log_file)
    to_log_file(logging.INFO, f"started: vmsnap {ctx.invoked_subcommand or ''}")


def _config() -> config.Config:
    """The configuration file's settings, read once, when a command needs them."""
    if OPTIONS.loaded is None:
        OPTIONS.loaded = config.load(config.find(OPTIONS.config_file))
    return OPTIONS.loaded


def _uri(connect: str | None) -> str | None:
    """--connect, else $LIBVIRT_DEFAULT_URI, else the configuration file's connect."""
    return connect or virt.default_uri() or _config().connect


def _dest(dest: Path | None) -> Path:
    chosen = dest or _config().dest
    if chosen is None:
        raise UsageError("--dest DIR is required (or dest in the configuration file)")
    return chosen


# ---------------------------------------------------------------- list


def _inventory() -> discover.Inventory:
    try:
        return discover.Inventory.load()
    except LvmError as exc:
        log.warning("LVM unavailable, volumes not resolved: %s", exc)
        return discover.Inventory([])


def _disk_json(guest: Guest) -> list[dict[str, Any]]:
    return [
        {
            "target": d.target,
            "device": d.spec.device,
            "type": d.spec.source_type,
            "source": d.spec.source,
            "volume": d.volume.full_name if d.volume else None,
            "size": d.size,
            "kind": d.volume.kind if d.volume else None,
            "backup": d.reason is None,
            "reason": d.reason,
        }
        for d in guest.disks
    ]


def _print_guest(guest: Guest) -> None:
    print(f"{guest.name}  {guest.state}  {guest.hypervisor}  {guest.uuid}")
    for d in guest.disks:
        volume = d.volume.full_name if d.volume else "-"
        kind = d.volume.kind if d.volume else "-"
        why = "backup" if d.reason is None else f"skip: {d.reason}"
        if d.reason and not d.skippable:
            why = f"not an LV: {d.reason} (backup refuses the guest unless --exclude'd)"
        print(
            f"  {d.target:<6} {d.spec.source or '-':<36} {volume:<28} "
            f"{human_size(d.size):>10}  {kind:<5}  {why}"
        )


@app.command("list", epilog=EXIT_STATUS)
def list_cmd(
    domains: Annotated[list[str] | None, typer.Argument(metavar="[DOMAIN]...")] = None,
    connect: ConnectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List guests, their state and disks, and which disks are LVs (thick or thin)."""
    with virt.connection(_uri(connect)) as conn:
        doms = [conn.domain(n) for n in domains] if domains else conn.domains()
        inventory = _inventory()
        guests = [discover.describe(d, inventory, conn) for d in doms]
    if as_json:
        doc = [
            {
                "name": g.name,
                "uuid": g.uuid,
                "state": g.state,
                "hypervisor": g.hypervisor,
                "disks": _disk_json(g),
            }
            for g in guests
        ]
        print(json.dumps(doc, indent=2))
    else:
        for guest in guests:
            _print_guest(guest)


# ---------------------------------------------------------------- backup


def _parse_excludes(items: list[str]) -> frozenset[tuple[str, str]]:
    pairs = set()
    for item in items:
        domain, sep, target = item.rpartition(":")
        if not sep or not domain or not target:
            raise UsageError(f"bad --exclude {item!r}: use DOMAIN:TARGET, e.g. web01:xvdb")
        pairs.add((domain, target))
    return frozenset(pairs)


def _result_json(
    result: backup.GuestResult, pruned: dict[str, retention.GuestPrune]
) -> dict[str, Any]:
    window = result.window
    prune = pruned.get(result.name)
    return {
        "name": result.name,
        "ok": result.ok,
        "error": str(result.error) if result.error else None,
        "exit_code": int(result.error.exit_code) if result.error else 0,
        "directory": str(result.directory) if result.directory else None,
        "quiesce": {"mode": window.used, "window_seconds": round(window.seconds, 3)}
        if window
        else None,
        "disks": [vars(d) for d in result.disks],
        "plan": _plan_json(result.plan) if result.plan else None,
        "prune": _prune_json(prune) if prune else None,
    }


def _plan_json(plan: snapshots.GuestPlan) -> dict[str, Any]:
    return {
        "disks": [
            {
                "target": d.target,
                "volume": d.volume.full_name,
                "kind": d.volume.kind,
                "size": d.volume.size,
                "snapshot": d.snapshot_name,
                "snapshot_size": d.cow_size,
            }
            for d in plan.disks
        ],
        "skipped": [{"target": t, "reason": r} for t, r in plan.skipped],
    }


def _print_result(result: backup.GuestResult, dry_run: bool) -> None:
    if result.plan and dry_run and result.ok:
        print(f"{result.name}: would back up")
        for d in result.plan.disks:
            cow = f"COW {human_size(d.cow_size)}" if d.cow_size else "thin snapshot"
            print(f"  {d.target}  {d.volume.full_name}  {human_size(d.volume.size)}  {cow}")
        for target, reason in result.plan.skipped:
            print(f"  {target}  skipped: {reason}")
        return
    if result.directory:
        raw = sum(d.size for d in result.disks)
        packed = sum(d.compressed_size for d in result.disks)
        mode = result.window.used if result.window else "?"
        print(
            f"{result.name}: OK  {result.directory}  {len(result.disks)} disk(s), "
            f"{human_size(raw)} -> {human_size(packed)}, quiesce {mode}"
        )
    if result.error:
        print(f"{result.name}: FAILED  {result.error}")


def backup_exit_code(results: list[backup.GuestResult]) -> ExitCode:
    """0 all good; 12 if anything was left behind; 1 some failed; else the first error's."""
    errors = [r.error for r in results if r.error is not None]
    if not errors:
        return ExitCode.OK
    if any(e.exit_code == ExitCode.LEFT_BEHIND for e in errors):
        return ExitCode.LEFT_BEHIND
    if len(errors) < len(results):
        return ExitCode.PARTIAL
    return errors[0].exit_code


@app.command("backup", epilog=EXIT_STATUS)
def backup_cmd(
    domains: Annotated[list[str] | None, typer.Argument(metavar="[DOMAIN]...")] = None,
    all_guests: Annotated[bool, typer.Option("--all", help="Back up every guest.")] = False,
    dest: DestOpt = None,
    connect: ConnectOpt = None,
    quiesce: Annotated[
        QuiesceMode | None,
        typer.Option(
            "--quiesce",
            help="auto (the default): agent freeze, else pause a running guest.",
        ),
    ] = None,
    snapshot_size: Annotated[
        str | None,
        typer.Option(
            "--snapshot-size",
            metavar="SIZE|PCT%",
            help="COW snapshot size per thick LV (default: 20% of the origin, "
            "shrunk to fit the VG's free space).",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", metavar="DOMAIN:TARGET", help="Leave a disk out (repeatable)."),
    ] = None,
    level: Annotated[
        int | None, typer.Option("--level", min=1, max=19, help="zstd level (default: 3).")
    ] = None,
    thin_pool_limit: Annotated[
        float | None,
        typer.Option(
            "--thin-pool-limit",
            metavar="PCT",
            min=1,
            max=100,
            help="Refuse to snapshot into a thin pool fuller than this, data or metadata "
            "(default: 90).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and check; change nothing.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Progress bars (default: bars on a terminal, plain lines otherwise).",
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Then prune each guest backed up, by the configuration file's [retention].",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Snapshot each guest's LVs in one short quiesce window, then stream them as zstd images."""
    if bool(domains) == all_guests:
        raise UsageError("name the guests to back up, or pass --all (not both)")
    cfg = _config()
    policy = _configured_policy() if prune else None
    with virt.connection(_uri(connect)) as conn:
        names = domains or [d.name for d in conn.domains()]
        settings = backup.BackupSettings(
            dest=_dest(dest),
            quiesce=quiesce or cfg.quiesce or QuiesceMode.AUTO,
            snapshot_size=SizeSpec.parse(snapshot_size) if snapshot_size else cfg.snapshot_size,
            excludes=_parse_excludes(exclude or []) | cfg.excludes_for(set(names)),
            level=level or cfg.level or DEFAULT_LEVEL,
            dry_run=dry_run,
            thin_pool_limit=thin_pool_limit or cfg.thin_pool_limit or snapshots.DEFAULT_POOL_LIMIT,
            hooks=_hooks(),
        )
        results = backup.backup(
            conn, domains or None, settings, _progress(False if dry_run else progress)
        )
    pruned = _prune_after(settings, results, policy)
    for failed in (r for r in results if r.error is not None):
        assert failed.error is not None
        _print_error(f"{failed.name}: {failed.error}", failed.error)
    if as_json:
        print(json.dumps([_result_json(r, pruned) for r in results], indent=2))
    else:
        for result in results:
            _print_result(result, dry_run)
        _print_prune(list(pruned.values()), dry_run)
    _done(backup_exit_code(results) or _prune_exit_code(list(pruned.values())))


def _prune_after(
    settings: backup.BackupSettings,
    results: list[backup.GuestResult],
    policy: retention.Policy | None,
) -> dict[str, retention.GuestPrune]:
    """``backup --prune``: each guest that was backed up (or, with --dry-run, that
    has backups), pruned by the configured policy."""
    if policy is None:
        return {}
    names = [r.name for r in results if r.ok and store.guest_dir(settings.dest, r.name).is_dir()]
    if not names:
        return {}
    plans = retention.prune(settings.dest, names, policy, dry_run=settings.dry_run)
    return dict(zip(names, plans, strict=True))


# ---------------------------------------------------------------- cleanup


@app.command("cleanup", epilog=EXIT_STATUS)
def cleanup_cmd(
    connect: ConnectOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be done.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Undo what a dead run left: resume/thaw its guests, remove its snapshots and
    unpublished folders and the new LVs it had not finished.  Every backup, restore
    and clone does this first, under the lock."""
    with run_lock():
        report = cleanup.cleanup(dry_run=dry_run, default_uri=_uri(connect))
    if as_json:
        print(json.dumps({"dry_run": dry_run, **vars(report)}, indent=2))
    else:
        verb = "would " if dry_run else ""
        for name in report.resumed:
            print(f"{verb}resume guest {name}")
        for name in report.thawed:
            print(f"{verb}thaw guest {name}")
        for snap in report.snapshots:
            print(f"{verb}remove snapshot {snap}")
        for path in report.partials:
            print(f"{verb}remove unpublished {path}")
        for name in report.volumes:
            print(f"{verb}remove unfinished LV {name}")
        if report.nothing and not report.problems:
            print("nothing to clean up")
    for problem in report.problems:
        print(f"vmsnap: error: {problem}", file=sys.stderr)
    _done(ExitCode.LEFT_BEHIND if report.problems else ExitCode.OK)


# ---------------------------------------------------------------- verify


def _verify_json(report: verify.BackupReport) -> dict[str, Any]:
    return {
        "directory": str(report.directory),
        "status": str(report.status),
        "ok": report.ok,
        "manifest_ok": report.manifest_ok,
        "message": report.message,
        "disks": [
            {
                "target": d.target,
                "image": d.image,
                "status": str(d.status),
                "message": d.message,
                "size": d.size,
                "chunk_sha256": d.chunk_sha256,
            }
            for d in report.disks
        ],
    }


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


@app.command("verify", epilog=EXIT_STATUS)
def verify_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH", help="A backup folder, a guest's folder or a whole destination."
        ),
    ],
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Decode every image of the backups at PATH and check it against the manifest.

    Each disk is OK, CORRUPT, MISSING or INCOMPLETE; a .partial folder (an
    interrupted run) is an INCOMPLETE backup.  Needs neither libvirt nor LVM.
    """
    reports = verify.verify_paths(paths, _progress(progress))
    now = time.time()
    for report in (r for r in reports if r.manifest_ok):
        catalog.record_verified(report.directory, str(report.status), now)
    for line in (line for r in reports for line in _verify_failures(r)):
        print(f"vmsnap: error: {line}", file=sys.stderr)
    if as_json:
        print(json.dumps([_verify_json(r) for r in reports], indent=2))
    else:
        for report in reports:
            _print_verify(report)
        good = sum(r.ok for r in reports)
        print(f"{len(reports)} backup(s) verified: {good} OK, {len(reports) - good} failed")
    _done(verify.exit_code(reports))


# ---------------------------------------------------------------- prune


def _configured_policy() -> retention.Policy:
    policy = _config().retention
    if policy is None or policy.empty:
        raise UsageError(
            "no retention policy: set keep_last, keep_daily, keep_weekly or keep_monthly "
            "under [retention] in the configuration file"
        )
    return policy


def _policy(keeps: dict[str, int | None]) -> retention.Policy:
    """The --keep-* options if any is given (they replace [retention] as a whole),
    else the configuration file's."""
    if all(v is None for v in keeps.values()):
        return _configured_policy()
    policy = retention.Policy(**{k: v or 0 for k, v in keeps.items()})
    if policy.empty:
        raise UsageError("every --keep-* is 0: that would keep nothing but the newest")
    return policy


def _stored_json(b: catalog.Stored, now: float) -> dict[str, Any]:
    m = b.manifest
    created = b.created
    return {
        "guest": b.guest,
        "directory": str(b.directory),
        "stamp": b.directory.name,
        "created": m.created if m else None,
        "age_seconds": round(now - created.timestamp()) if created else None,
        "size": m.total_size if m else None,
        "compressed_size": sum(d.compressed_size for d in m.disks) if m else None,
        "disks": [d.target for d in m.disks] if m else [],
        "verified": {"at": b.verified.at, "status": b.verified.status} if b.verified else None,
        "good": b.good,
        "problem": b.problem,
    }


def _prune_json(p: retention.GuestPrune) -> dict[str, Any]:
    now = time.time()
    return {
        "guest": p.guest,
        "folder": str(p.folder),
        "keep": [{**_stored_json(b, now), "reasons": list(why)} for b, why in p.keep],
        "remove": [_stored_json(b, now) for b in p.remove],
        "ignored": [_stored_json(b, now) for b in p.ignored],
        "partials": [str(path) for path in p.partials],
        "errors": p.errors,
    }


def _print_prune(plans: list[retention.GuestPrune], dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for p in plans:
        for b, why in p.keep:
            print(f"{p.guest}: keep    {b.directory.name}  ({', '.join(why)})")
        for b in p.remove:
            print(f"{p.guest}: {verb} {b.directory.name}")
        for path in p.partials:
            print(f"{p.guest}: {verb} {path.name} (unpublished)")
        for b in p.ignored:
            reason = b.problem or f"last verify {b.verified.status if b.verified else '?'}"
            print(f"{p.guest}: ignored {b.directory.name} (not a good backup: {reason})")


def _prune_exit_code(plans: list[retention.GuestPrune]) -> ExitCode:
    for line in (e for p in plans for e in p.errors):
        print(f"vmsnap: error: {line}", file=sys.stderr)
    return ExitCode.DESTINATION if any(p.errors for p in plans) else ExitCode.OK


def _keep(flag: str, text: str) -> Any:
    """A --keep-* option of prune: a count, 0 or more."""
    return typer.Option(flag, min=0, metavar="N", help=text)


@app.command("prune", epilog=EXIT_STATUS)
def prune_cmd(
    domains: Annotated[list[str] | None, typer.Argument(metavar="[DOMAIN]...")] = None,
    dest: DestOpt = None,
    keep_last: Annotated[int | None, _keep("--keep-last", "Keep the N newest.")] = None,
    keep_daily: Annotated[
        int | None, _keep("--keep-daily", "Keep the newest of each of N UTC days.")
    ] = None,
    keep_weekly: Annotated[
        int | None, _keep("--keep-weekly", "Keep the newest of each of N ISO weeks.")
    ] = None,
    keep_monthly: Annotated[
        int | None, _keep("--keep-monthly", "Keep the newest of each of N months.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove the backups a retention policy does not keep, and unpublished .partial folders.

    Only good backups (a sealed manifest, no failed verify) count; the newest of
    each guest is always kept; anything else is left alone.
    """
    policy = _policy(
        {
            "keep_last": keep_last,
            "keep_daily": keep_daily,
            "keep_weekly": keep_weekly,
            "keep_monthly": keep_monthly,
        }
    )
    plans = retention.prune(_dest(dest), domains or None, policy, dry_run=dry_run)
    if as_json:
        doc = {
            "dry_run": dry_run,
            "policy": policy.as_dict(),
            "guests": [_prune_json(p) for p in plans],
        }
        print(json.dumps(doc, indent=2))
    else:
        _print_prune(plans, dry_run)
    _done(_prune_exit_code(plans))


# ---------------------------------------------------------------- backups


def _print_stored(found: list[catalog.GuestFolder], now: float) -> None:
    print(f"{'GUEST':<16} {'BACKUP':<18} {'AGE':>5} {'SIZE':>10} {'STORED':>10}  VERIFIED")
    for g in found:
        for b in reversed(g.backups):
            m = b.manifest
            age = _ago(now - b.created.timestamp()) if b.created else "?"
            size = human_size(m.total_size) if m else "?"
            packed = human_size(sum(d.compressed_size for d in m.disks)) if m else "?"
            checked = f"{b.verified.status} {b.verified.at}" if b.verified else "never"
            line = f"{g.guest:<16} {b.directory.name:<18} {age:>5} {size:>10} {packed:>10}  "
            print(line + (checked if m else f"BAD: {b.problem}"))
        for path in g.partials:
            print(f"{g.guest:<16} {path.name}  (unpublished: an interrupted or running backup)")


@app.command("backups", epilog=EXIT_STATUS)
def backups_cmd(
    domains: Annotated[list[str] | None, typer.Argument(metavar="[DOMAIN]...")] = None,
    dest: DestOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What the destination holds: each guest's backups, newest first, with their
    size, age and last verify result."""
    found = catalog.scan(_dest(dest), domains or None)
    now = time.time()
    if as_json:
        doc = [
            {
                "guest": g.guest,
                "folder": str(g.folder),
                "backups": [_stored_json(b, now) for b in reversed(g.backups)],
                "partials": [str(p) for p in g.partials],
            }
            for g in found
        ]
        print(json.dumps(doc, indent=2))
    else:
        _print_stored(found, now)


# ---------------------------------------------------------------- restore


@app.command("restore", epilog=EXIT_STATUS)
def restore_cmd(
    backup_dir: Annotated[Path, typer.Argument(metavar="BACKUP", help="A backup folder.")],
    disk: Annotated[
        list[str] | None,
        typer.Option("--disk", metavar="TARGET", help="Restore only this disk (repeatable)."),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", metavar="/dev/VG/LV", help="Onto this existing LV.")
    ] = None,
    vg: Annotated[str | None, typer.Option("--vg", help="Onto new LVs in this VG.")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Name of the new LV (default: <LV>-restored).")
    ] = None,
    thin_pool: Annotated[
        str | None, typer.Option("--thin-pool", metavar="POOL", help="New LVs are thin, in POOL.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the data on an existing LV.")
    ] = False,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a backup's images back onto an existing LV or onto new LVs, checked on the way."""
    if (to is None) == (vg is None):
        raise UsageError("say where to restore: --to /dev/VG/LV or --vg VG (one of them)")
    settings = restore.RestoreSettings(
        backup_dir=backup_dir,
        disks=tuple(disk or ()),
        to=to,
        vg=vg,
        name=name,
        thin_pool=thin_pool,
        force=force,
        hooks=_hooks(),
    )
    done = restore.restore(settings, _progress(progress))
    if as_json:
        print(json.dumps([vars(d) for d in done], indent=2))
        return
    for d in done:
        how = "new LV, sparse" if d.sparse else ("new LV" if d.created else "existing LV")
        size = human_size(d.size)
        print(f"{d.target}: restored onto {d.path} ({how}), {size}, chunk sha256 {d.chunk_sha256}")


# ---------------------------------------------------------------- clone


@app.command("clone", epilog=EXIT_STATUS)
def clone_cmd(
    source: Annotated[str, typer.Argument(help="A backup folder, or a template guest's name.")],
    new_name: Annotated[str, typer.Argument(metavar="NEW_NAME", help="The new guest's name.")],
    vg: Annotated[
        str | None, typer.Option("--vg", help="VG for the new LVs (default: the source's).")
    ] = None,
    thin_pool: Annotated[
        str | None, typer.Option("--thin-pool", metavar="POOL", help="New LVs are thin, in POOL.")
    ] = None,
    connect: ConnectOpt = None,
    quiesce: Annotated[
        QuiesceMode, typer.Option("--quiesce", help="For a live template, as in backup.")
    ] = QuiesceMode.AUTO,
    snapshot_size: Annotated[
        str | None,
        typer.Option("--snapshot-size", metavar="SIZE|PCT%", help="As in backup."),
    ] = None,
    no_define: Annotated[
        bool, typer.Option("--no-define", help="Write NEW_NAME.xml here and print it instead.")
    ] = False,
    start: Annotated[bool, typer.Option("--start", help="Start the new guest.")] = False,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a new guest from a backup or a template guest: new LVs, name, UUID and MACs."""
    if no_define and start:
        raise UsageError("--start needs the guest defined: drop --no-define")
    xml_path = Path(f"{store.safe_component(new_name)}.xml") if no_define else None
    if xml_path is not None and (xml_path.exists() or xml_path.is_symlink()):
        raise ExistsError(f"{xml_path} exists; refusing to overwrite it")
    settings = clone.CloneSettings(
        source=source,
        new_name=new_name,
        vg=vg,
        thin_pool=thin_pool,
        quiesce=quiesce,
        snapshot_size=SizeSpec.parse(snapshot_size) if snapshot_size else None,
        define=not no_define,
        start=start,
        hooks=_hooks(),
    )
    with virt.connection(_uri(connect)) as conn:
        result = clone.clone(conn, settings, _progress(progress))
    if xml_path is not None:
        store.write_file(xml_path, (result.xml + "\n").encode())  # 0600: it may hold secrets
    if as_json:
        doc = {
            "name": result.name,
            "uuid": result.uuid,
            "defined": result.defined,
            "started": result.started,
            "xml": str(xml_path) if xml_path else None,
            "disks": [vars(d) for d in result.disks],
        }
        print(json.dumps(doc, indent=2))
        return
    if no_define:
        print(result.xml)
    for d in result.disks:
        print(f"{d.target}: {d.path}  {human_size(d.size)}  chunk sha256 {d.chunk_sha256}")
    state = (
        "started" if result.started else ("defined" if result.defined else f"written to {xml_path}")
    )
    print(f"{result.name}: {state}, uuid {result.uuid}")


# ---------------------------------------------------------------- image


@image_app.command("dump", epilog=EXIT_STATUS)
def image_dump(
    source: Annotated[str, typer.Argument(help="Block device or file; - for stdin.")],
    output: Annotated[str, typer.Argument(help="Image to write; - for stdout.")],
    level: Annotated[int, typer.Option("--level", min=1, max=19, help="zstd level.")] = 3,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write SOURCE as a zstd image (zstd -dc gives the exact bytes back)."""
    stats = imagecmd.dump(source, output, level=level, progress=_progress(progress))
    _report_stats(stats, as_json, to_stdout=output == "-")


@image_app.command("load", epilog=EXIT_STATUS)
def image_load(
    image_path: Annotated[str, typer.Argument(metavar="IMAGE", help="zstd image; - for stdin.")],
    target: Annotated[str, typer.Argument(help="Block device or file to write; - for stdout.")],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing regular file.")
    ] = False,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the bytes of a zstd IMAGE onto TARGET, checking the stream on the way."""
    stats = imagecmd.load(image_path, target, force=force, progress=_progress(progress))
    _report_stats(stats, as_json, to_stdout=target == "-")


def _report_stats(stats: imagecmd.StreamStats, as_json: bool, *, to_stdout: bool) -> None:
    doc = {
        "size": stats.size,
        "chunk_sha256": stats.chunk_sha256,
        "compressed_size": stats.compressed_size,
    }
    if as_json and not to_stdout:
        print(json.dumps(doc, indent=2))
    else:
        log.info(
            "%s raw, %s compressed, chunk sha256 %s",
            human_size(stats.size),
            human_size(stats.compressed_size),
            stats.chunk_sha256,
        )


# ---------------------------------------------------------------- checkpoint


def _ago(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _checkpoint_json(cp: checkpoint.Checkpoint, now: float) -> dict[str, Any]:
    return {
        "domain": cp.name,
        "uuid": cp.uuid,
        "label": cp.label,
        "created": cp.created,
        "age_seconds": round(now - cp.created),
        "expires": cp.expires,
        "expired": cp.expired(now),
        "invalid": cp.invalid,
        "disks": [
            {
                "target": d.target,
                "snapshot": d.snapshot.full_name,
                "origin": d.origin.full_name if d.origin else None,
                "kind": d.snapshot.kind,
                "size": d.snapshot.size,
                "fill_percent": d.fill,
                "cow_left": d.cow_left,
                "pool": d.pool.full_name if d.pool else None,
                "pool_fill_percent": d.pool_fill,
                "invalid": d.invalid,
            }
            for d in cp.disks
        ],
    }


def _disk_line(d: checkpoint.CheckpointDisk) -> str:
    where = f"  {d.target:<6} {d.snapshot.full_name:<36} {d.snapshot.kind:<5}"
    if d.invalid:
        return f"{where}  INVALID: overflowed, lost"
    if d.fill is not None:
        return f"{where}  {d.fill:5.1f}% full, {human_size(d.cow_left)} COW left"
    pool = d.pool.full_name if d.pool else "?"
    fill = f"{d.pool_fill:.1f}%" if d.pool_fill is not None else "?"
    return f"{where}  thin, pool {pool} {fill} full"


def _print_checkpoint(cp: checkpoint.Checkpoint, now: float) -> None:
    expiry = "no expiry"
    if cp.expires is not None:
        left = cp.expires - now
        expiry = f"expired {_ago(left)} ago" if left <= 0 else f"expires in {_ago(left)}"
    state = "  LOST (invalid: rollback refused)" if cp.invalid else ""
    print(f"{cp.name or cp.uuid}  {cp.label}  age {_ago(now - cp.created)}  {expiry}{state}")
    for d in cp.disks:
        print(_disk_line(d))


def _warn_fill(cp: checkpoint.Checkpoint) -> None:
    for d in cp.disks:
        if d.invalid:
            log.error(
                "checkpoint %s: %s (%s) overflowed: the checkpoint is lost and cannot be "
                "rolled back; release it",
                cp.title,
                d.target,
                d.snapshot.full_name,
            )
        elif (d.fill or d.pool_fill or 0.0) >= FILL_WARNING:
            what = "snapshot" if d.fill is not None else "thin pool"
            log.warning(
                "checkpoint %s: %s %s is %.0f%% full: run vmsnap checkpoint watch, or "
                "roll back or release soon",
                cp.title,
                d.target,
                what,
                d.fill or d.pool_fill or 0.0,
            )


@checkpoint_app.command("create", epilog=EXIT_STATUS)
def checkpoint_create(
    domain: Annotated[str, typer.Argument(metavar="DOMAIN")],
    label: Annotated[
        str | None,
        typer.Option("--label", help="Name of the checkpoint (default: the UTC time)."),
    ] = None,
    snapshot_size: Annotated[
        str | None,
        typer.Option("--snapshot-size", metavar="SIZE|PCT%", help="As in backup."),
    ] = None,
    quiesce: Annotated[
        QuiesceMode, typer.Option("--quiesce", help="As in backup.")
    ] = QuiesceMode.AUTO,
    expire: Annotated[
        str | None,
        typer.Option(
            "--expire", metavar="DURATION", help="watch releases it after this (90m, 12h, 3d, 1w)."
        ),
    ] = None,
    connect: ConnectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Snapshot all the guest's LVs in one quiesce window and keep them as a checkpoint."""
    settings = checkpoint.CreateSettings(
        label=label or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        quiesce=quiesce,
        snapshot_size=SizeSpec.parse(snapshot_size) if snapshot_size else None,
        expire=checkpoint.parse_duration(expire) if expire else None,
        hooks=_hooks(),
    )
    with virt.connection(_uri(connect)) as conn:
        made = checkpoint.create(conn, domain, settings)
    if as_json:
        print(json.dumps(_checkpoint_json(made, time.time()), indent=2))
    else:
        _print_checkpoint(made, time.time())


@checkpoint_app.command("list", epilog=EXIT_STATUS)
def checkpoint_list(
    domain: Annotated[str | None, typer.Argument(metavar="[DOMAIN]")] = None,
    connect: ConnectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Each checkpoint with its LVs, age, fill, COW space left and expiry."""
    if domain is None:
        found = checkpoint.checkpoints()
    else:
        with virt.connection(_uri(connect)) as conn:
            found = checkpoint.guest_checkpoints(conn, domain)
    now = time.time()
    for cp in found:
        _warn_fill(cp)
    if as_json:
        print(json.dumps([_checkpoint_json(c, now) for c in found], indent=2))
        return
    for cp in found:
        _print_checkpoint(cp, now)
    if not found:
        print("no checkpoints")


@checkpoint_app.command("rollback", epilog=EXIT_STATUS)
def checkpoint_rollback(
    domain: Annotated[str, typer.Argument(metavar="DOMAIN")],
    label: Annotated[str | None, typer.Argument(metavar="[LABEL]")] = None,
    shutdown: Annotated[
        bool, typer.Option("--shutdown", help="Shut the guest down cleanly first, and wait.")
    ] = False,
    start: Annotated[bool, typer.Option("--start", help="Start the guest afterwards.")] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", metavar="SECONDS", min=1, help="How long --shutdown waits."),
    ] = SHUTDOWN_TIMEOUT,
    connect: ConnectOpt = None,
) -> None:
    """Merge a checkpoint back into the guest's LVs (the guest shut off): undo the upgrade."""
    with virt.connection(_uri(connect)) as conn:
        cp = checkpoint.rollback(
            conn,
            domain,
            label,
            shutdown=shutdown,
            start=start,
            hooks_settings=_hooks(),
            shutdown_timeout=timeout,
        )
    after = "started" if start else "left shut off"
    print(f"{domain}: rolled back to checkpoint {cp.label} ({len(cp.disks)} disk(s)), {after}")


@checkpoint_app.command("release", epilog=EXIT_STATUS)
def checkpoint_release(
    domain: Annotated[str, typer.Argument(metavar="DOMAIN")],
    label: Annotated[str | None, typer.Argument(metavar="[LABEL]")] = None,
    connect: ConnectOpt = None,
) -> None:
    """Remove a checkpoint's snapshots (the upgrade went well)."""
    with virt.connection(_uri(connect)) as conn:
        cp = checkpoint.release(conn, domain, label, _hooks())
    print(f"{domain}: released checkpoint {cp.label} ({len(cp.disks)} snapshot(s) removed)")


@checkpoint_app.command("watch", epilog=EXIT_STATUS)
def checkpoint_watch(
    threshold: Annotated[
        float,
        typer.Option("--threshold", metavar="PCT", min=1, max=99, help="Extend at this fill."),
    ] = FILL_WARNING,
) -> None:
    """Extend checkpoint snapshots nearing full while the VG has room, release expired
    ones; one line per action.  Run it from a timer."""
    report = checkpoint.watch(threshold=threshold)
    for line in report.actions:
        print(line)
    if report.error is not None:
        raise report.error


# ---------------------------------------------------------------- entry point


def _hooks() -> Hooks:
    """--hooks-dir, else $VMSNAP_HOOKS_DIR, else the configuration file's hooks_dir."""
    chosen = OPTIONS.hooks_dir
    if chosen is None and not os.environ.get("VMSNAP_HOOKS_DIR"):
        chosen = _config().hooks_dir
    return Hooks.from_environment(chosen)


def _progress(flag: bool | None) -> Progress:
    """-q silences progress unless --progress asks for it."""
    return make_progress(False if OPTIONS.quiet and flag is None else flag)


def _print_error(text: str, exc: BaseException) -> None:
    print(f"vmsnap: error: {text}", file=sys.stderr)
    to_log_file(logging.ERROR, text)
    for note in getattr(exc, "__notes__", ()):
        print(f"vmsnap:   {note}", file=sys.stderr)
    if OPTIONS.debug:
        traceback.print_exception(exc, file=sys.stderr)


def _report(exc: BaseException, code: int) -> int:
    _print_error(str(exc), exc)
    return code


def main(argv: list[str] | None = None) -> int:
    """Console entry point: the one place errors become exit codes."""
    code = _run(argv)
    to_log_file(logging.INFO, f"exit status {code}")
    close_log_file()
    return code


def _run(argv: list[str] | None) -> int:
    GATE.install()
    try:
        app(args=argv, prog_name="vmsnap")  # standalone: usage errors exit 2 by themselves
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Interrupted as exc:
        return _report(exc, 128 + exc.signum)
    except KeyboardInterrupt:  # only before the gate is installed
        return _report(Interrupted(2), 130)
    except VmsnapError as exc:
        return _report(exc, int(exc.exit_code))
    except Exception as exc:  # noqa: BLE001 - the last resort: report, never a bare traceback
        return _report(exc, ExitCode.INTERNAL)
    finally:
        sys.stdout.flush()
    if code == 0 and GATE.pending is not None:
        return 128 + GATE.pending
    return code


def _done(code: int) -> None:
    """End a command with ``code`` (typer ignores return values)."""
    if code != ExitCode.OK:
        raise typer.Exit(int(code))
