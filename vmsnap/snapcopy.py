"""Copy one snapshot onto a new LV, raw, guarded against COW overflow.

The clone of a live template reads its snapshots while the template runs on,
as a backup does: a COW snapshot is watched and grown by the overflow guard
(guard.py), a chunk read after it overflowed stops the copy at once, and a
read error is reported as the snapshot's, a write error as the new LV's.
"""

from __future__ import annotations

from collections.abc import Callable

from vmsnap import faults, image
from vmsnap.devio import DeviceSink, open_device
from vmsnap.digest import ChunkDigest
from vmsnap.errors import IntegrityError
from vmsnap.guard import GuardSettings, SnapshotGuard
from vmsnap.lvwrite import RestoredDisk, io_error
from vmsnap.models import LogicalVolume
from vmsnap.progress import Progress
from vmsnap.snapstream import SnapshotReader, watched


def _on_chunk(progress: Progress, guard: SnapshotGuard | None) -> Callable[[int], None]:
    def advance(nbytes: int) -> None:
        if guard is not None:
            guard.check()  # stop at once once the snapshot is lost
        progress.advance(nbytes)

    return faults.after_first("copying", advance)


def _copy(
    src: SnapshotReader, sink: DeviceSink, size: int, sparse: bool, advance: Callable[[int], None]
) -> ChunkDigest:
    """``size`` bytes in 4 MiB chunks; zero chunks skipped on a sparse target."""
    digest = ChunkDigest()
    done = 0
    while done < size and (chunk := image.read_full(src, min(image.CHUNK, size - done))):
        digest.update(chunk)
        if sparse and chunk.count(0) == len(chunk):
            sink.seek(len(chunk), 1)
        else:
            sink.write(chunk)
        done += len(chunk)
        advance(len(chunk))
    if done < size:
        raise IntegrityError(f"snapshot {src.snap.full_name} ended after {done} of {size} bytes")
    return digest


def copy_snapshot(
    target: str,
    origin: LogicalVolume,
    snap: LogicalVolume,
    dst: LogicalVolume,
    *,
    progress: Progress,
    guard_settings: GuardSettings,
) -> RestoredDisk:
    """The bytes of ``snap`` (of ``origin``) onto the new LV ``dst``; sparse when
    ``dst`` is thin (a new thin LV reads zeros)."""
    progress.item(f"{target} -> {dst.full_name}", origin.size)
    try:
        with (
            watched(snap, origin.size, guard_settings) as guard,
            SnapshotReader(snap) as src,
            open_device(dst.path) as sink,
        ):
            digest = _copy(src, sink, origin.size, dst.is_thin, _on_chunk(progress, guard))
    except OSError as exc:
        raise io_error(exc, source=snap.path, target=dst) from exc
    progress.item_done()
    stats = image.StreamStats(origin.size, digest.hexdigest(), compressed_size=origin.size)
    return RestoredDisk.of(target, dst, stats, created=True, sparse=dst.is_thin)
