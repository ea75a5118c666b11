"""Writing onto an LV: one backup image decoded onto it, checked on the way,
and the record of what was written.  Restore and clone share it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmsnap import image
from vmsnap.devio import open_device
from vmsnap.errors import DestinationError, NotFoundError
from vmsnap.manifest import ManifestDisk
from vmsnap.models import LogicalVolume
from vmsnap.progress import Progress


@dataclass(frozen=True, kw_only=True)
class RestoredDisk:
    """One LV written by a restore or a clone."""

    target: str
    volume: str
    path: str
    size: int
    chunk_sha256: str
    created: bool  # a new LV (removed again if the job fails), not an existing one
    sparse: bool  # zero regions were skipped, not written

    @classmethod
    def of(
        cls,
        target: str,
        lv: LogicalVolume,
        stats: image.StreamStats,
        *,
        created: bool,
        sparse: bool,
    ) -> RestoredDisk:
        """What ``write_image`` wrote onto ``lv`` for the disk ``target``."""
        return cls(
            target=target,
            volume=lv.full_name,
            path=lv.path,
            size=stats.size,
            chunk_sha256=stats.chunk_sha256,
            created=created,
            sparse=sparse,
        )


def io_error(exc: OSError, *, source: str, target: LogicalVolume) -> DestinationError:
    """A read or write error while filling ``target``: a full thin pool, EIO."""
    where = source if exc.filename == source else target.full_name
    return DestinationError(f"I/O error on {where}: {exc.strerror or exc}")


def write_image(
    disk: ManifestDisk, directory: Path, target: LogicalVolume, *, sparse: bool, progress: Progress
) -> image.StreamStats:
    """Decode one image onto ``target``, checking length and digest on the way."""
    progress.item(f"{disk.target} -> {target.full_name}", disk.size)
    try:
        src = open(directory / disk.image, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError as exc:
        raise NotFoundError(f"image {directory / disk.image} is missing") from exc
    with src, open_device(target.path) as sink:
        try:
            stats = image.decompress(
                src,
                sink,
                expected_size=disk.size,
                expected_digest=disk.chunk_sha256,
                sparse=sparse,
                progress=progress.advance,
            )
        except OSError as exc:
            raise io_error(exc, source=str(directory / disk.image), target=target) from exc
    progress.item_done()
    return stats
