"""vmsnap image dump and image load: any block device or file to and from a zstd image."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from vmsnap.cli import jsondoc
from vmsnap.cli.core import imagecmd
from vmsnap.cli.options import JsonOpt, ProgressOpt
from vmsnap.cli.session import Session
from vmsnap.models import human_size

log = logging.getLogger("vmsnap")


def image_dump(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(metavar="SOURCE", help="Block device or file; - for stdin.")
    ],
    output: Annotated[str, typer.Argument(metavar="OUTPUT", help="Image to write; - for stdout.")],
    level: Annotated[
        int, typer.Option("--level", metavar="N", min=1, max=19, help="zstd level.")
    ] = 3,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write SOURCE as a zstd image (zstd -dc gives the exact bytes back)."""
    bar = _session(ctx, to_stdout=output == "-").progress(progress)
    stats = imagecmd.dump(source, output, level=level, progress=bar)
    _report_stats(stats, as_json, to_stdout=output == "-")


def image_load(
    ctx: typer.Context,
    image_path: Annotated[str, typer.Argument(metavar="IMAGE", help="zstd image; - for stdin.")],
    target: Annotated[
        str, typer.Argument(metavar="TARGET", help="Block device or file to write; - for stdout.")
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write onto an existing TARGET: a file is replaced once the new one is "
            "complete, a block device is overwritten in place.",
        ),
    ] = False,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the bytes of a zstd IMAGE onto TARGET, checking the stream on the way."""
    bar = _session(ctx, to_stdout=target == "-").progress(progress)
    stats = imagecmd.load(image_path, target, force=force, progress=bar)
    _report_stats(stats, as_json, to_stdout=target == "-")


def _session(ctx: typer.Context, *, to_stdout: bool) -> Session:
    """The session; stdout that carries the data gets no JSON, not even an error's."""
    session = Session.of(ctx)
    session.json = session.json and not to_stdout
    return session


def _report_stats(stats: imagecmd.StreamStats, as_json: bool, *, to_stdout: bool) -> None:
    if as_json and not to_stdout:
        jsondoc.emit(jsondoc.stream_stats(stats))
    else:
        log.info(
            "%s raw, %s compressed, chunk sha256 %s",
            human_size(stats.size),
            human_size(stats.compressed_size),
            stats.chunk_sha256,
        )
