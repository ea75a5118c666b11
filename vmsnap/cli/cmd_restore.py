"""vmsnap restore and vmsnap clone: new or existing LVs from a backup (or a template)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

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

BackupArg = Annotated[Path, typer.Argument(metavar="BACKUP", help="A backup folder.")]
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


def restore_cmd(
    ctx: typer.Context,
    backup_dir: BackupArg,
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
    """Write a backup's images back onto an existing LV or onto new LVs, checked on the way."""
    if (to is None) == (vg is None):
        raise UsageError("say where to restore: --to /dev/VG/LV or --vg VG (one of them)")
    session = Session.of(ctx)
    settings = restore.RestoreSettings(
        backup_dir=backup_dir,
        disks=tuple(disk or ()),
        to=to,
        vg=vg,
        name=name,
        thin_pool=thin_pool,
        force=force,
        hooks=session.hooks(),
    )
    done = restore.restore(settings, session.progress(progress))
    if as_json:
        jsondoc.emit([jsondoc.restored_disk(d) for d in done])
        return
    for d in done:
        how = "new LV, sparse" if d.sparse else ("new LV" if d.created else "existing LV")
        size = human_size(d.size)
        print(f"{d.target}: restored onto {d.path} ({how}), {size}, chunk sha256 {d.chunk_sha256}")


SourceArg = Annotated[
    str, typer.Argument(metavar="SOURCE", help="A backup folder, or a template guest's name.")
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
    """Make a new guest from a backup or a template guest: new LVs, name, UUID and MACs."""
    if no_define and start:
        raise UsageError("--start needs the guest defined: drop --no-define")
    session = Session.of(ctx)
    settings = clone.CloneSettings(
        source=source,
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
