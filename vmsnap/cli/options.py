"""Options and arguments that several commands share, as ``Annotated`` aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
DestOpt = Annotated[
    Path | None,
    typer.Option(
        "--dest",
        metavar="DIR",
        help="Destination folder, which must exist (default: dest in the configuration file).",
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
