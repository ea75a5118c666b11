"""vmsnap restore and vmsnap clone: new or existing LVs from a backup (or a template)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from vmsnap.backupname import BackupName, is_path
from vmsnap.cli import jsondoc
from vmsnap.cli.core import clone, guard, restore, virt
from vmsnap.cli.options import (
    ConnectOpt,
    JsonOpt,
    ProgressOpt,
    SnapshotSizeOpt,
    ThinPoolOpt,
)
from vmsnap.cli.session import Session
from vmsnap.errors import UnsupportedDiskError, UsageError
from vmsnap.models import QuiesceMode, SizeSpec, human_size
from vmsnap.progress import Progress

log = logging.getLogger("vmsnap")

BackupArg = Annotated[
    str,
    typer.Argument(
        metavar="BACKUP",
        help="A backup's folder REPO/backups/GUEST/TIME, or with --dest a guest's NAME.",
    ),
]
RepoOpt = Annotated[
    str | None,
    typer.Option(
        "--dest",
        metavar="REPO",
        help="Name the backup by its guest in REPO, a folder or s3://BUCKET/PREFIX "
        "(default: dest in the configuration file).",
    ),
]
AtOpt = Annotated[
    str | None,
    typer.Option(
        "--at", metavar="TIME", help="With a NAME: the backup at TIME (or the newest starting so)."
    ),
]
DiskOpt = Annotated[
    list[str] | None,
    typer.Option("--disk", metavar="TARGET", help="Restore only this disk (repeatable)."),
]
ToOpt = Annotated[
    str | None, typer.Option("--to", metavar="/dev/VG/LV", help="Onto this existing LV.")
]
NameOpt = Annotated[
    str | None,
    typer.Option("--name", metavar="NAME", help="Name of the new LV (default: <LV>-restored)."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite the data on an existing LV.")]


def backup_name(session: Session, text: str, *, dest: str | None, at: str | None) -> BackupName:
    """A NAME in a repository with --dest or --at, or when the text is no path
    and the configuration file names a dest; else a backup's folder."""
    if dest is not None or at is not None:
        return BackupName(text, session.repository(dest), at)
    if not is_path(text) and session.config().dest is not None:
        return BackupName(text, session.repository(None))
    if not is_path(text):
        raise UsageError(
            f"{text!r} is no backup folder (it has no /): to name a guest's backup, "
            "give --dest REPO (or dest in the configuration file)"
        )
    return BackupName(text)


def restore_cmd(
    ctx: typer.Context,
    backup: BackupArg,
    dest: RepoOpt = None,
    at: AtOpt = None,
    disk: DiskOpt = None,
    to: ToOpt = None,
    vg: Annotated[
        str | None, typer.Option("--vg", metavar="VG", help="Onto new LVs in this VG.")
    ] = None,
    name: NameOpt = None,
    thin_pool: ThinPoolOpt = None,
    force: ForceOpt = False,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a backup's disks back onto an existing LV or onto new LVs, checked on the way.

    Name the backup by its folder, REPO/backups/GUEST/TIME, or by its guest's
    NAME with --dest REPO (the newest backup, or the one --at TIME).
    """
    if (to is None) == (vg is None):
        raise UsageError("say where to restore: --to /dev/VG/LV or --vg VG (one of them)")
    session = Session.of(ctx)
    settings = restore.RestoreSettings(
        backup=backup_name(session, backup, dest=dest, at=at),
        disks=tuple(disk or ()),
        to=to,
        vg=vg,
        name=name,
        thin_pool=thin_pool,
        force=force,
        hooks=session.hooks(),
    )
    result = restore.restore(settings, session.progress(progress))
    if as_json:
        jsondoc.emit(jsondoc.restore_result(result))
        return
    log.info("restored %s", result.backup)
    for d in result.disks:
        how = "new LV, sparse" if d.sparse else ("new LV" if d.created else "existing LV")
        size = human_size(d.size)
        print(f"{d.target}: restored onto {d.path} ({how}), {size}, chunk sha256 {d.chunk_sha256}")


SourceArg = Annotated[
    str,
    typer.Argument(
        metavar="SOURCE",
        help="A template guest's name, a backup's folder, or with --from-backup a guest's NAME.",
    ),
]
FromBackupOpt = Annotated[
    bool,
    typer.Option(
        "--from-backup",
        help="SOURCE is a guest whose backup in REPO (--dest, or dest) is cloned.",
    ),
]
NewNameArg = Annotated[str, typer.Argument(metavar="NEW_NAME", help="The new guest's name.")]
VgOpt = Annotated[
    str | None,
    typer.Option("--vg", metavar="VG", help="VG for the new LVs (default: the source's)."),
]
QuiesceCloneOpt = Annotated[
    QuiesceMode, typer.Option("--quiesce", help="For a live template, as in backup.")
]
NoDefineOpt = Annotated[
    bool,
    typer.Option("--no-define", help="Do not define the guest: print its XML (or --xml FILE)."),
]
XmlOpt = Annotated[
    Path | None,
    typer.Option("--xml", metavar="FILE", help="Write the new guest's XML to FILE (a new file)."),
]
StartOpt = Annotated[bool, typer.Option("--start", help="Start the new guest.")]


def clone_cmd(
    ctx: typer.Context,
    source: SourceArg,
    new_name: NewNameArg,
    from_backup: FromBackupOpt = False,
    dest: RepoOpt = None,
    at: AtOpt = None,
    vg: VgOpt = None,
    thin_pool: ThinPoolOpt = None,
    connect: ConnectOpt = None,
    quiesce: QuiesceCloneOpt = QuiesceMode.AUTO,
    snapshot_size: SnapshotSizeOpt = None,
    no_define: NoDefineOpt = False,
    xml: XmlOpt = None,
    start: StartOpt = False,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a new guest from a backup or a template guest: new LVs, name, UUID and MACs.

    SOURCE is a template guest's name, or a backup: its folder
    REPO/backups/GUEST/TIME, or with --from-backup (or --dest REPO, --at TIME)
    the newest backup of the guest SOURCE (or the one at TIME).
    """
    if no_define and start:
        raise UsageError("--start needs the guest defined: drop --no-define")
    session = Session.of(ctx)
    settings = clone.CloneSettings(
        source=_clone_source(session, source, from_backup=from_backup, dest=dest, at=at),
        new_name=new_name,
        vg=vg,
        thin_pool=thin_pool,
        quiesce=quiesce,
        snapshot_size=SizeSpec.parse(snapshot_size) if snapshot_size else None,
        define=not no_define,
        start=start,
        xml_file=xml,
        hooks=session.hooks(),
        guard=guard.GuardSettings.from_environment(),
    )
    with virt.connection(session.uri(connect)) as conn:
        result = _clone(conn, settings, session.progress(progress))
    if as_json:
        jsondoc.emit(jsondoc.clone_result(result, xml))
    else:
        _print_clone(result, xml)


def _clone_source(
    session: Session, source: str, *, from_backup: bool, dest: str | None, at: str | None
) -> BackupName | str:
    """A backup (a folder, or a NAME in a repository), or a template's name."""
    if from_backup or dest is not None or at is not None:
        return BackupName(source, session.repository(dest), at)
    return BackupName(source) if is_path(source) else source


def _clone(
    conn: virt.Connection, settings: clone.CloneSettings, bar: Progress
) -> clone.CloneResult:
    """clone.clone, with the hint clone can give: it has no --exclude (the
    snapshot engine's hint is backup's)."""
    try:
        return clone.clone(conn, settings, bar)
    except UnsupportedDiskError as exc:
        exc.hint = "clone copies every disk of a template: each must be an LV"
        raise


def _print_clone(result: clone.CloneResult, xml_path: Path | None) -> None:
    """With the XML on stdout (``--no-define`` without ``--xml``) stdout holds
    only the XML, for ``virsh define /dev/stdin``; the summary goes to stderr."""
    summary = sys.stdout
    if not result.defined and xml_path is None:
        print(result.xml)
        summary = sys.stderr
    for d in result.disks:
        line = f"{d.target}: {d.path}  {human_size(d.size)}  chunk sha256 {d.chunk_sha256}"
        print(line, file=summary)
    state = "started" if result.started else ("defined" if result.defined else "not defined")
    if xml_path is not None:
        state += f", XML written to {xml_path}"
    print(f"{result.name}: {state}, uuid {result.uuid}", file=summary)
