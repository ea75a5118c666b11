"""The quiesce-and-snapshot engine that backup, clone and checkpoint share.

Plan a guest's snapshots (which disks, how much COW space, which names), then
take them all in one quiesce window that holds nothing else, and remove them
on every way out.  It knows LVM, libvirt and the hooks, and no job.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from vmsnap import faults, hooks, lvm
from vmsnap.errors import NoSpaceError, UnsupportedDiskError, UsageError
from vmsnap.hooks import Scope
from vmsnap.journal import Journal
from vmsnap.models import Disk, Guest, LogicalVolume, QuiesceMode, SizeSpec, human_size
from vmsnap.quiesce import Window, quiesced
from vmsnap.virt import Domain

log = logging.getLogger(__name__)

DEFAULT_SNAPSHOT_SHARE = 20.0  # percent of the origin, for a COW snapshot
MIN_SNAPSHOT_SHARE = 5.0  # below this a default-sized snapshot is refused
DEFAULT_POOL_LIMIT = 90.0  # percent: a thin pool fuller than this is not snapshotted
CLONE_TAGS = (lvm.TAG, f"{lvm.TAG}-clone")


@dataclass(frozen=True)
class DiskPlan:
    target: str
    volume: LogicalVolume
    snapshot_name: str
    cow_size: int | None  # None for a thin snapshot


@dataclass(frozen=True)
class GuestPlan:
    guest: Guest
    disks: tuple[DiskPlan, ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def total_bytes(self) -> int:
        return sum(d.volume.size for d in self.disks)


def new_run_id() -> str:
    return secrets.token_hex(4)


def run_tags(run_id: str) -> tuple[str, ...]:
    """The tags of one run's snapshots: what ``cleanup`` finds after a crash."""
    return (lvm.TAG, f"{lvm.TAG}-run-{run_id}")


def _round_up(n: int, extent: int) -> int:
    return -(-n // extent) * extent


def full_cow(origin: int) -> int:
    """COW space that can never overflow: the origin plus room for the
    exception table (16 bytes per 4 KiB chunk, under 1/64) and its header."""
    return origin + origin // 64 + (1 << 20)


def _cow_wanted(share: SizeSpec, origin: int) -> int:
    if share.percent is not None and share.percent >= 100:
        return full_cow(origin)  # "100%": never overflow
    return share.for_origin(origin)


def cow_sizes(
    origins: list[int], *, free: int, extent: int, spec: SizeSpec | None, vg: str
) -> list[int]:
    """COW sizes for thick origins in one VG, checked against its free space.

    Explicit ``--snapshot-size``: exactly that.  Default: 20% of each origin,
    shrunk to fit the free space but never below 5% of the origin.
    """
    share = spec or SizeSpec(percent=DEFAULT_SNAPSHOT_SHARE)
    sizes = [_round_up(max(_cow_wanted(share, o), extent), extent) for o in origins]
    if sum(sizes) <= free:
        return sizes
    needed = human_size(sum(sizes))
    if spec is not None:
        raise NoSpaceError(
            f"volume group {vg} has {human_size(free)} free, snapshots need {needed}",
            hint="free space in the VG or pass a smaller --snapshot-size",
        )
    scale = free / sum(sizes)
    scaled = [(int(s * scale) // extent) * extent for s in sizes]
    if any(
        s < max(extent, o * MIN_SNAPSHOT_SHARE / 100) for s, o in zip(scaled, origins, strict=True)
    ):
        raise NoSpaceError(
            f"volume group {vg} has {human_size(free)} free, too little for snapshots "
            f"of {human_size(sum(origins))} of volumes (want {needed})",
            hint="free space in the VG or pass --snapshot-size",
        )
    return scaled


def _select_disks(
    guest: Guest, excludes: frozenset[tuple[str, str]]
) -> tuple[list[Disk], list[tuple[str, str]]]:
    chosen: list[Disk] = []
    skipped: list[tuple[str, str]] = []
    targets = {d.target for d in guest.disks}
    unknown = sorted(t for d, t in excludes if d == guest.name and t not in targets)
    if unknown:
        raise UsageError(f"no disk {', '.join(unknown)} to --exclude")
    for disk in guest.disks:
        if (guest.name, disk.target) in excludes:
            skipped.append((disk.target, "excluded"))
        elif disk.skippable:
            skipped.append((disk.target, disk.reason or disk.spec.device))
        elif disk.volume is None:
            raise UnsupportedDiskError(
                f"disk {disk.target} ({disk.spec.source or 'no source'}) "
                f"cannot be snapshotted: {disk.reason}",
                hint=f"--exclude {guest.name}:{disk.target} backs up the rest",
            )
        else:
            lvm.check_snapshottable(disk.volume)
            chosen.append(disk)
    if not chosen:
        raise UnsupportedDiskError("no LV disks to back up")
    return chosen, skipped


def check_thin_pools(disks: list[Disk], limit: float) -> None:
    """A full thin pool stops the live guest, not only the backup: refuse to
    add a snapshot to a pool whose data or metadata is past ``limit`` percent."""
    pools = {d.pool.full_name: d.pool for d in disks if d.pool is not None}
    for pool in pools.values():
        for what, fill in (("data", pool.data_percent), ("metadata", pool.metadata_percent)):
            if fill is not None and fill > limit:
                raise NoSpaceError(
                    f"thin pool {pool.full_name} {what} is {fill:.1f}% full (limit {limit:g}%)",
                    hint="grow the pool (lvextend) or pass a higher --thin-pool-limit",
                )


def _plan_sizes(disks: list[Disk], spec: SizeSpec | None) -> dict[str, int]:
    by_vg: dict[str, list[LogicalVolume]] = {}
    for disk in disks:
        assert disk.volume is not None
        if not disk.volume.is_thin:
            by_vg.setdefault(disk.volume.vg, []).append(disk.volume)
    sizes: dict[str, int] = {}
    for vg_name, volumes in by_vg.items():
        vg = lvm.volume_group(vg_name)
        planned = cow_sizes(
            [v.size for v in volumes], free=vg.free, extent=vg.extent_size, spec=spec, vg=vg_name
        )
        sizes.update({v.full_name: s for v, s in zip(volumes, planned, strict=True)})
    return sizes


def plan_guest(
    guest: Guest,
    *,
    run_id: str,
    excludes: frozenset[tuple[str, str]] = frozenset(),
    snapshot_size: SizeSpec | None = None,
    thin_pool_limit: float = DEFAULT_POOL_LIMIT,
    purpose: str = "vmsnap",
) -> GuestPlan:
    """Which of the guest's disks get a snapshot, how big, and its name
    (``<origin>-<purpose>-<run_id>``); what is refused is refused here."""
    chosen, skipped = _select_disks(guest, excludes)
    check_thin_pools(chosen, thin_pool_limit)
    sizes = _plan_sizes(chosen, snapshot_size)
    plans = []
    for disk in chosen:
        volume = disk.volume
        assert volume is not None
        name = lvm.snapshot_name(volume.vg, volume.name, run_id, purpose)
        plans.append(DiskPlan(disk.target, volume, name, sizes.get(volume.full_name)))
    return GuestPlan(guest=guest, disks=tuple(plans), skipped=tuple(skipped))


@contextmanager
def guest_snapshots(
    dom: Domain,
    plan: GuestPlan,
    mode: QuiesceMode,
    *,
    journal: Journal | None,
    uri: str,
    tags: tuple[str, ...],
    scope: Scope = hooks.NO_HOOKS,
    keep: bool = False,
) -> Iterator[tuple[Window, list[LogicalVolume]]]:
    """All of a guest's snapshots, taken in one quiesce window that holds nothing
    else; the guest is released before the body runs, and every snapshot is
    removed when it ends, however it ends; with ``keep``, only if the body
    fails.  Backup, clone and checkpoint use this.  The pre-quiesce hooks run
    first (one failing stops here, before any snapshot), the post-snapshot
    hooks once the guest is released."""
    scope = scope.bind(
        VMSNAP_DOMAIN=dom.name,
        VMSNAP_DOMAIN_UUID=dom.uuid,
        VMSNAP_VOLUMES=" ".join(d.volume.path for d in plan.disks),
    )
    scope.run(hooks.PRE_QUIESCE, VMSNAP_QUIESCE=str(mode))
    with ExitStack() as snapshots:
        with quiesced(dom, mode, journal, uri) as window:
            snaps = [
                snapshots.enter_context(lvm.snapshot(d.volume, d.snapshot_name, d.cow_size, tags))
                for d in plan.disks
            ]
            faults.point("window")
        faults.point("snapshotted")
        log.info(
            "%s: snapshots taken, quiesce %s for %.2f s", dom.name, window.used, window.seconds
        )
        scope.run(
            hooks.POST_SNAPSHOT,
            VMSNAP_QUIESCE=window.used,
            VMSNAP_SNAPSHOTS=" ".join(s.path for s in snaps),
        )
        yield window, snaps
        if keep:
            snapshots.pop_all()
