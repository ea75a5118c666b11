"""The overflow guard: watch a COW snapshot while it is read, grow it in time.

A classic snapshot whose copy-on-write space fills up becomes invalid and its
reads fail.  While a disk streams, a thread polls the snapshot's fill
(``snap_percent``) and validity every ``interval`` seconds; past ``threshold``
percent it runs ``lvextend`` while the VG has room.  The reading side calls
:meth:`SnapshotGuard.check` with every chunk, so an overflow stops the stream
at once.  The peak fill goes into the manifest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from vmsnap import lvm
from vmsnap.environment import env_number
from vmsnap.errors import IntegrityError, VmsnapError
from vmsnap.models import FILL_WARNING, LogicalVolume, human_size

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.1  # seconds


@dataclass(frozen=True)
class GuardSettings:
    interval: float = 1.0  # seconds between polls
    threshold: float = FILL_WARNING  # percent full that triggers an extension
    step_share: float = lvm.GROWTH_SHARE  # each extension adds this share of the origin

    @classmethod
    def from_environment(cls) -> GuardSettings:
        """``VMSNAP_GUARD_INTERVAL`` tunes the poll (the CLI reads it)."""
        return cls(interval=env_number("VMSNAP_GUARD_INTERVAL", cls.interval, MIN_INTERVAL))


class SnapshotGuard:
    def __init__(self, snap: LogicalVolume, origin_size: int, settings: GuardSettings) -> None:
        self.snap = snap
        self.size = snap.size
        self.origin_size = origin_size
        self.settings = settings
        self.peak = 0.0
        self.extended = 0
        self.failure: str | None = None
        self._warned = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"guard-{snap.name}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.interval):
            try:
                if not self.poll():
                    return
            except VmsnapError as exc:  # a failed lvs/lvextend: keep watching
                log.warning("overflow guard of %s: %s", self.snap.full_name, exc)

    def poll(self) -> bool:
        """One look at the snapshot; False once it is lost."""
        now = lvm.find_volume(self.snap.vg, self.snap.name)
        if now is None or lvm.is_invalid(now):
            self.failure = self._lost_message()
            return False
        fill = now.snap_percent or 0.0
        self.peak = max(self.peak, fill)
        self.size = now.size
        if fill >= self.settings.threshold:
            self._extend()
        return True

    def _extend(self) -> None:
        vg = lvm.volume_group(self.snap.vg)
        step = lvm.growth_step(self.origin_size, vg.extent_size, self.settings.step_share)
        if vg.free < step:
            if self._warned:
                return
            self._warned = True
            log.warning(
                "snapshot %s is %.0f%% full and VG %s has only %s free: it may overflow",
                self.snap.full_name,
                self.peak,
                vg.name,
                human_size(vg.free),
            )
            return
        lvm.extend(self.snap, step)
        self.extended += step
        log.info(
            "snapshot %s %.0f%% full: extended by %s",
            self.snap.full_name,
            self.peak,
            human_size(step),
        )

    def _lost_message(self) -> str:
        return (
            f"snapshot {self.snap.full_name} overflowed its {human_size(self.size)} of COW "
            f"space while it was read (the origin changed more than that; up to "
            f"{human_size(self.origin_size)} may be needed); nothing was published"
        )

    def check(self) -> None:
        """Called by the reader with every chunk: stop at once if the snapshot is lost."""
        if self.failure is not None:
            raise IntegrityError(
                self.failure, hint="pass a larger --snapshot-size or free space in the VG"
            )

    def final_check(self) -> None:
        """After the last byte: one more synchronous look before publishing."""
        self.poll()
        self.check()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


@contextmanager
def guarded(
    snap: LogicalVolume, origin_size: int, settings: GuardSettings
) -> Iterator[SnapshotGuard]:
    guard = SnapshotGuard(snap, origin_size, settings)
    guard.start()
    try:
        yield guard
    finally:
        guard.stop()


@contextmanager
def guard_snapshot(
    snap: LogicalVolume, origin_size: int, settings: GuardSettings
) -> Iterator[SnapshotGuard | None]:
    """A guard while a COW snapshot is read; none for a thin one (it shares the
    pool and cannot overflow alone)."""
    if snap.is_thin:
        yield None
        return
    with guarded(snap, origin_size, settings) as guard:
        yield guard
