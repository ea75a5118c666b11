"""The repository commands that need no guest: vmsnap init, image store, export."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from vmsnap.cli import jsondoc
from vmsnap.cli.core import repo_jobs
from vmsnap.cli.options import JsonOpt, ProgressOpt
from vmsnap.cli.session import Session
from vmsnap.models import human_size

log = logging.getLogger("vmsnap")

RepoOpt = Annotated[
    str | None,
    typer.Option(
        "--dest",
        metavar="REPO",
        help="The repository: a folder, or s3://BUCKET/PREFIX "
        "(default: dest in the configuration file).",
    ),
]
LevelOpt = Annotated[
    int, typer.Option("--level", min=1, max=19, metavar="N", help="zstd level of new chunks.")
]


def init_cmd(ctx: typer.Context, dest: RepoOpt = None, as_json: JsonOpt = False) -> None:
    """Create a chunk repository in REPO, a new or empty folder (backup format 3)."""
    path = Session.of(ctx).repository(dest)
    repo = repo_jobs.init(path)
    if as_json:
        jsondoc.emit(jsondoc.repository(repo))
    else:
        log.info("%s: new repository %s", repo.location, repo.config.id)


def image_store(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Block device or file; - for stdin.")],
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="The backup's name.")],
    dest: RepoOpt = None,
    level: LevelOpt = 3,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store SOURCE in a repository as a backup of its own, one disk called NAME.

    Only chunks the repository does not hold yet are compressed and written.
    """
    session = Session.of(ctx)
    bar = session.progress(progress)
    result = repo_jobs.store_image(
        session.repository(dest), source, name=name, level=level, progress=bar
    )
    if as_json:
        jsondoc.emit(jsondoc.store_result(result))
        return
    c = result.counts
    log.info(
        "%s: read %s, new %s (%s stored), deduplicated %s; %s",
        name,
        human_size(c.read),
        human_size(c.new),
        human_size(c.stored),
        human_size(c.deduplicated),
        result.backup,
    )


def export_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The guest (or image store NAME).")],
    output: Annotated[
        str, typer.Option("--output", "-o", metavar="FILE", help="Image to write; - for stdout.")
    ],
    dest: RepoOpt = None,
    disk: Annotated[
        str | None,
        typer.Option("--disk", metavar="DISK", help="The disk (needed when it has several)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", metavar="TIME", help="The newest backup whose time starts with TIME."),
    ] = None,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a disk of NAME's newest backup as one zstd image (zstd -dc and
    image load take it); every chunk is checked on the way."""
    session = Session.of(ctx)
    session.json = session.json and output != "-"  # the image owns stdout: no error document
    result = repo_jobs.export(
        session.repository(dest),
        name,
        disk=disk,
        at=at,
        output=output,
        progress=session.progress(progress),
    )
    if as_json and output != "-":
        jsondoc.emit(jsondoc.export_result(result))
    else:
        log.info(
            "%s %s: %s raw, %s image, chunk sha256 %s",
            result.backup,
            result.target,
            human_size(result.size),
            human_size(result.written),
            result.chunk_sha256,
        )
