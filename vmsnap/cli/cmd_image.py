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
    source: Annotated[str, typer.Argument(help="Block device or file; - for stdin.")],
    output: Annotated[str, typer.Argument(help="Image to write; - for stdout.")],
    level: Annotated[int, typer.Option("--level", min=1, max=19, help="zstd level.")] = 3,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write SOURCE as a zstd image (zstd -dc gives the exact bytes back)."""
    bar = Session.of(ctx).progress(progress)
    stats = imagecmd.dump(source, output, level=level, progress=bar)
    _report_stats(stats, as_json, to_stdout=output == "-")


def image_load(
    ctx: typer.Context,
    image_path: Annotated[str, typer.Argument(metavar="IMAGE", help="zstd image; - for stdin.")],
    target: Annotated[str, typer.Argument(help="Block device or file to write; - for stdout.")],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing regular file.")
    ] = False,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the bytes of a zstd IMAGE onto TARGET, checking the stream on the way."""
    bar = Session.of(ctx).progress(progress)
    stats = imagecmd.load(image_path, target, force=force, progress=bar)
    _report_stats(stats, as_json, to_stdout=target == "-")


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
