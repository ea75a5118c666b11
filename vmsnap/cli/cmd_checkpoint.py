"""vmsnap checkpoint create, list, rollback, release and watch."""

from __future__ import annotations

import logging
import time
from typing import Annotated

import typer

from vmsnap.cli import jsondoc
from vmsnap.cli.core import checkpoint, virt
from vmsnap.cli.options import (
    ConnectOpt,
    DomainArg,
    JsonOpt,
    LabelArg,
    QuiesceOpt,
    SnapshotSizeOpt,
)
from vmsnap.cli.session import Session
from vmsnap.cli.text import ago
from vmsnap.models import FILL_WARNING, SHUTDOWN_TIMEOUT, QuiesceMode, SizeSpec, human_size

log = logging.getLogger("vmsnap")


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
        expiry = f"expired {ago(left)} ago" if left <= 0 else f"expires in {ago(left)}"
    state = "  LOST (invalid: rollback refused)" if cp.invalid else ""
    print(f"{cp.name or cp.uuid}  {cp.label}  age {ago(now - cp.created)}  {expiry}{state}")
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


LabelOpt = Annotated[
    str | None,
    typer.Option("--label", help="Name of the checkpoint (default: the UTC time)."),
]
ExpireOpt = Annotated[
    str | None,
    typer.Option(
        "--expire", metavar="DURATION", help="watch releases it after this (90m, 12h, 3d, 1w)."
    ),
]


def checkpoint_create(
    ctx: typer.Context,
    domain: DomainArg,
    label: LabelOpt = None,
    snapshot_size: SnapshotSizeOpt = None,
    quiesce: QuiesceOpt = QuiesceMode.AUTO,
    expire: ExpireOpt = None,
    connect: ConnectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Snapshot all the guest's LVs in one quiesce window and keep them as a checkpoint."""
    session = Session.of(ctx)
    settings = checkpoint.CreateSettings(
        label=label or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        quiesce=quiesce,
        snapshot_size=SizeSpec.parse(snapshot_size) if snapshot_size else None,
        expire=checkpoint.parse_duration(expire) if expire else None,
        hooks=session.hooks(),
    )
    with virt.connection(session.uri(connect)) as conn:
        made = checkpoint.create(conn, domain, settings)
    if as_json:
        jsondoc.emit(jsondoc.checkpoint(made, time.time()))
    else:
        _print_checkpoint(made, time.time())


def checkpoint_list(
    ctx: typer.Context,
    domain: Annotated[str | None, typer.Argument(metavar="[DOMAIN]")] = None,
    connect: ConnectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Each checkpoint with its LVs, age, fill, COW space left and expiry."""
    if domain is None:
        found = checkpoint.checkpoints()
    else:
        with virt.connection(Session.of(ctx).uri(connect)) as conn:
            found = checkpoint.guest_checkpoints(conn, domain)
    now = time.time()
    for cp in found:
        _warn_fill(cp)
    if as_json:
        jsondoc.emit([jsondoc.checkpoint(c, now) for c in found])
        return
    for cp in found:
        _print_checkpoint(cp, now)
    if not found:
        print("no checkpoints")


TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", metavar="SECONDS", min=1, help="How long --shutdown waits."),
]


def checkpoint_rollback(
    ctx: typer.Context,
    domain: DomainArg,
    label: LabelArg = None,
    shutdown: Annotated[
        bool, typer.Option("--shutdown", help="Shut the guest down cleanly first, and wait.")
    ] = False,
    start: Annotated[bool, typer.Option("--start", help="Start the guest afterwards.")] = False,
    timeout: TimeoutOpt = SHUTDOWN_TIMEOUT,
    connect: ConnectOpt = None,
) -> None:
    """Merge a checkpoint back into the guest's LVs (the guest shut off): undo the upgrade."""
    session = Session.of(ctx)
    with virt.connection(session.uri(connect)) as conn:
        cp = checkpoint.rollback(
            conn,
            domain,
            label,
            shutdown=shutdown,
            start=start,
            hooks_settings=session.hooks(),
            shutdown_timeout=timeout,
        )
    after = "started" if start else "left shut off"
    print(f"{domain}: rolled back to checkpoint {cp.label} ({len(cp.disks)} disk(s)), {after}")


def checkpoint_release(
    ctx: typer.Context,
    domain: DomainArg,
    label: LabelArg = None,
    connect: ConnectOpt = None,
) -> None:
    """Remove a checkpoint's snapshots (the upgrade went well)."""
    session = Session.of(ctx)
    with virt.connection(session.uri(connect)) as conn:
        cp = checkpoint.release(conn, domain, label, session.hooks())
    print(f"{domain}: released checkpoint {cp.label} ({len(cp.disks)} snapshot(s) removed)")


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
