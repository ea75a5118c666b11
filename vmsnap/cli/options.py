"""Options and arguments that several commands share, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vmsnap.cli.session import Session
from vmsnap.models import QuiesceMode

ConnectOpt = Annotated[
    str | None,
    typer.Option(
        "--connect",
        "-c",
        metavar="URI",
        help="libvirt URI (default: $LIBVIRT_DEFAULT_URI, else libvirt's default).",
    ),
]


def _json_wanted(ctx: typer.Context, value: bool) -> bool:
    """--json also asks for an error document if the run fails (see app._report)."""
    if value:
        Session.of(ctx).json = True
    return value


JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout.", callback=_json_wanted),
]
DestOpt = Annotated[
    str | None,
    typer.Option(
        "--dest",
        metavar="REPO",
        help="The repository: a folder, or s3://BUCKET/PREFIX "
        "(default: dest in the configuration file).",
    ),
]
DomainsArg = Annotated[list[str] | None, typer.Argument(metavar="[DOMAIN]...")]
DomainArg = Annotated[str, typer.Argument(metavar="DOMAIN")]
LabelArg = Annotated[str | None, typer.Argument(metavar="[LABEL]")]
ProgressOpt = Annotated[bool | None, typer.Option("--progress/--no-progress")]
SnapshotSizeOpt = Annotated[
    str | None,
    typer.Option("--snapshot-size", metavar="SIZE|PCT%", help="As in backup."),
]
QuiesceOpt = Annotated[QuiesceMode, typer.Option("--quiesce", help="As in backup.")]
ThinPoolOpt = Annotated[
    str | None, typer.Option("--thin-pool", metavar="POOL", help="New LVs are thin, in POOL.")
]


def dry_run(text: str) -> Any:
    """A --dry-run flag; each command says what it means for it."""
    return typer.Option("--dry-run", help=text)


def keep(flag: str, text: str) -> Any:
    """A --keep-* option of prune: a count, 0 or more."""
    return typer.Option(flag, min=0, metavar="N", help=text)
