"""LVM: read volumes and groups, create and remove tagged snapshots.

State is read only through ``lvs``/``vgs --reportformat json --units b
--nosuffix --binary``; argv builders and parsers are pure functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from vmsnap import runner
from vmsnap.errors import (
    CommandError,
    ExistsError,
    LeftBehindError,
    LvmError,
    NoSpaceError,
    NotFoundError,
    UnsupportedDiskError,
    UsageError,
)
from vmsnap.logs import VERBOSE
from vmsnap.models import LogicalVolume, VolumeGroup, human_size
from vmsnap.signals import GATE

log = logging.getLogger(__name__)

TAG = "vmsnap"
"""Every snapshot vmsnap creates carries this tag, so leftovers can be found."""
CHECKPOINT_TAG = "vmsnap_checkpoint"
"""A kept checkpoint snapshot carries this tag instead (never swept as a leftover)."""
UNFINISHED_TAG = "vmsnap_unfinished"
"""A new LV of a restore or clone carries this tag until its data is complete:
``vmsnap cleanup`` removes an LV a dead run's journal names only while it has it."""
_TAG_RE = re.compile(r"^[A-Za-z0-9_+.:/=!#&][A-Za-z0-9_+.:/=!#&-]{0,1023}$")

LV_COLUMNS = (
    "lv_name,vg_name,lv_path,lv_dm_path,lv_size,lv_attr,segtype,origin,pool_lv,"
    "data_percent,snap_percent,metadata_percent,lv_tags,lv_snapshot_invalid"
)
VG_COLUMNS = "vg_name,vg_size,vg_free,vg_extent_size"
NAME_MAX = 127  # LVM's and device-mapper's limit on a name, without the NUL
_NAME_RE = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$")
_RESERVED_PARTS = (
    "_cdata",
    "_cmeta",
    "_corig",
    "_cpool",
    "_cvol",
    "_imeta",
    "_iorig",
    "_mimage",
    "_mlog",
    "_pmspare",
    "_rimage",
    "_rmeta",
    "_tdata",
    "_tmeta",
    "_vdata",
    "_vorigin",
    "_wcorig",
)
_BUSY_MARKERS = ("in use", "busy", "open")
REMOVE_ATTEMPTS = 8


def valid_name(name: str) -> bool:
    """True when ``name`` is acceptable to LVM as a VG or LV name."""
    if not 0 < len(name) <= NAME_MAX or name in (".", ".."):
        return False
    if name.startswith(("snapshot", "pvmove")):
        return False
    return bool(_NAME_RE.match(name)) and not any(p in name for p in _RESERVED_PARTS)


def dm_escape(name: str) -> str:
    return name.replace("-", "--")


def dm_name(vg: str, lv: str) -> str:
    """Device-mapper name of VG/LV (``/dev/mapper/<this>``)."""
    return f"{dm_escape(vg)}-{dm_escape(lv)}"


def split_dm_name(name: str) -> tuple[str, str] | None:
    """Invert :func:`dm_name`: the single dash separates VG from LV, ``--`` is a dash."""
    for i, char in enumerate(name):
        if char != "-":
            continue
        before = len(name[:i]) - len(name[:i].rstrip("-"))
        after = len(name[i:]) - len(name[i:].lstrip("-"))
        if before == 0 and after % 2 == 1:
            cut = i + after - 1  # LV names never start with a dash
            vg, lv = name[:cut], name[cut + 1 :]
            vg, lv = vg.replace("--", "-"), lv.replace("--", "-")
            # "vg-lv-real", "vg-lv-cow": device-mapper layers, not LVs
            return (vg, lv) if vg and lv and dm_name(vg, lv) == name else None
    return None


def path_to_vg_lv(path: str) -> tuple[str, str] | None:
    """``/dev/VG/LV`` or ``/dev/mapper/VG-LV`` to ``(VG, LV)``; None for other paths."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "" or parts[1] != "dev":
        return None
    if parts[2] == "mapper":
        return split_dm_name(parts[3])
    if parts[2] and parts[3] and valid_name(parts[2]) and valid_name(parts[3]):
        return parts[2], parts[3]
    return None


def snapshot_name(vg: str, origin: str, run_id: str, kind: str = "vmsnap") -> str:
    """A recognisable snapshot name that fits LVM's and device-mapper's limits.

    ``<origin>-<kind>-<run_id>``; a long origin is shortened and given a short
    hash so that two long names sharing a prefix still differ.
    """
    suffix = f"-{kind}-{run_id}"
    name = origin + suffix
    if _fits(vg, name):
        return name
    digest = hashlib.sha256(origin.encode()).hexdigest()[:8]
    suffix = f"~{digest}{suffix}".replace("~", "_")
    prefix = origin
    while prefix and not _fits(vg, prefix + suffix):
        prefix = prefix[:-1]
    if not prefix:
        raise UsageError(f"volume group name {vg!r} is too long for a snapshot name")
    return prefix.rstrip("-") + suffix


LAYER_SUFFIX = len("-real")  # device-mapper layers a COW snapshot adds: -real, -cow


def _fits(vg: str, name: str) -> bool:
    """Room for the name, its device-mapper name, and that name's layers."""
    return len(name) <= NAME_MAX and len(dm_name(vg, name)) + LAYER_SUFFIX <= NAME_MAX


def check_snapshottable(lv: LogicalVolume) -> None:
    """A COW snapshot gives its origin a ``<vg>-<lv>-real`` device-mapper layer;
    an LV whose name leaves no room for it cannot be snapshotted (LVM itself
    would fail half-way, asking for manual intervention)."""
    if not lv.is_thin and len(dm_name(lv.vg, lv.name)) + LAYER_SUFFIX > NAME_MAX:
        raise UnsupportedDiskError(
            f"{lv.full_name}: the name is too long for a COW snapshot (device-mapper "
            f"names stop at {NAME_MAX} characters, and the origin needs a -real layer)",
            hint="rename the LV (lvrename) to something shorter",
        )


def _percent(value: str) -> float | None:
    return float(value) if value not in ("", "-1") else None


def _int(value: str) -> int:
    return int(value) if value else 0


def parse_lvs(text: str) -> list[LogicalVolume]:
    """Parse ``lvs --reportformat json --units b --nosuffix --binary -o LV_COLUMNS``."""
    rows = json.loads(text)["report"][0]["lv"]
    return [
        LogicalVolume(
            vg=r["vg_name"],
            name=r["lv_name"].strip("[]"),  # a hidden LV (lvs -a) is shown in brackets
            path=r["lv_path"],
            dm_path=r["lv_dm_path"],
            size=_int(r["lv_size"]),
            attr=r["lv_attr"],
            segtype=r["segtype"],
            origin=r["origin"] or None,
            pool=r["pool_lv"] or None,
            data_percent=_percent(r["data_percent"]),
            snap_percent=_percent(r["snap_percent"]),
            metadata_percent=_percent(r["metadata_percent"]),
            tags=tuple(t for t in r["lv_tags"].split(",") if t),
            snapshot_invalid=r["lv_snapshot_invalid"] in ("1", "invalid"),
        )
        for r in rows
    ]


def parse_vgs(text: str) -> list[VolumeGroup]:
    rows = json.loads(text)["report"][0]["vg"]
    return [
        VolumeGroup(
            name=r["vg_name"],
            size=_int(r["vg_size"]),
            free=_int(r["vg_free"]),
            extent_size=_int(r["vg_extent_size"]),
        )
        for r in rows
    ]


_REPORT = ["--reportformat", "json", "--units", "b", "--nosuffix", "--binary"]


def lvs_argv(
    select: str | None = None, names: tuple[str, ...] = (), *, hidden: bool = False
) -> list[str]:
    argv = ["lvs", *_REPORT, "-o", LV_COLUMNS]
    if hidden:
        argv.append("--all")  # merging snapshots and pool internals too
    if select:
        argv += ["--select", select]
    return [*argv, "--", *names] if names else argv


def list_volumes(
    select: str | None = None, names: tuple[str, ...] = (), *, hidden: bool = False
) -> list[LogicalVolume]:
    return parse_lvs(runner.run(lvs_argv(select, names, hidden=hidden)).stdout)


def find_volume(vg: str, lv: str) -> LogicalVolume | None:
    if not (valid_name(vg) and valid_name(lv)):
        return None
    found = [v for v in list_volumes(names=(vg,)) if v.name == lv]
    return found[0] if found else None


def volume_group(name: str) -> VolumeGroup:
    argv = ["vgs", *_REPORT, "-o", VG_COLUMNS, "--", name]
    groups = parse_vgs(runner.run(argv).stdout)
    if not groups:
        raise LvmError(f"volume group {name!r} not found")
    return groups[0]


def create_snapshot_argv(
    origin: LogicalVolume, name: str, size: int | None, tags: tuple[str, ...]
) -> list[str]:
    """Thick origin: a COW snapshot of ``size`` bytes.  Thin: a thin snapshot,
    activated despite the activation-skip flag thin snapshots get (``-K``)."""
    argv = ["lvcreate", "--snapshot", "--name", name]
    for tag in tags:
        argv += ["--addtag", tag]
    if origin.is_thin:
        argv.append("--ignoreactivationskip")
    else:
        if size is None:
            raise ValueError("a COW snapshot needs a size")
        argv += ["--size", f"{size}b"]
    return [*argv, "--", f"{origin.vg}/{origin.name}"]


def remove_argv(lv: LogicalVolume) -> list[str]:
    return ["lvremove", "--force", "--yes", "--", f"{lv.vg}/{lv.name}"]


def _is_busy(error: CommandError) -> bool:
    text = error.stderr.lower()
    return any(marker in text for marker in _BUSY_MARKERS)


def remove_volume(lv: LogicalVolume, *, attempts: int = REMOVE_ATTEMPTS) -> None:
    """``lvremove``, retried with back-off while the device is briefly busy
    (udev or a scanner holding it open); :class:`LeftBehindError` if it stays."""
    delay = 0.25
    for attempt in range(1, attempts + 1):
        try:
            runner.run(remove_argv(lv), mutates=True)
            return
        except CommandError as exc:
            if not _is_busy(exc) or attempt == attempts:
                raise LeftBehindError(
                    f"could not remove {lv.vg}/{lv.name}: {exc}",
                    hint=f"remove it with: lvremove {lv.vg}/{lv.name}",
                ) from exc
            log.info("%s/%s busy, retrying lvremove in %.1f s", lv.vg, lv.name, delay)
            time.sleep(delay)
            delay = min(delay * 2, 4.0)


def _remove_half_made(vg: str, name: str) -> None:
    """A failed lvcreate can leave the LV in the metadata: remove it if so."""
    with GATE.deferred():
        left = find_volume(vg, name)
        if left is not None:
            log.warning("lvcreate failed but left %s behind: removing it", left.full_name)
            remove_volume(left)


def create_snapshot(
    origin: LogicalVolume, name: str, size: int | None, tags: tuple[str, ...]
) -> LogicalVolume:
    """``lvcreate`` and nothing else: this runs inside the quiesce window, so the
    snapshot's description is derived rather than read back with ``lvs``."""
    try:
        runner.run(create_snapshot_argv(origin, name, size, tags), mutates=True)
    except CommandError:
        _remove_half_made(origin.vg, name)
        raise
    room = "thin" if size is None else f"{human_size(size)} of COW space"
    log.log(VERBOSE, "snapshot %s/%s of %s taken (%s)", origin.vg, name, origin.full_name, room)
    return LogicalVolume(
        vg=origin.vg,
        name=name,
        path=f"/dev/{origin.vg}/{name}",
        dm_path=f"/dev/mapper/{dm_name(origin.vg, name)}",
        size=origin.size if size is None else size,
        attr="",
        segtype=origin.segtype if origin.is_thin else "linear",
        origin=origin.name,
        pool=origin.pool,
        tags=tags,
    )


@contextmanager
def snapshot(
    origin: LogicalVolume, name: str, size: int | None, tags: tuple[str, ...]
) -> Iterator[LogicalVolume]:
    """Create a snapshot and remove it again on every way out.

    If the body failed, a removal failure is logged and added as a note, and the
    body's error goes on; otherwise the removal failure is raised.
    """
    snap = create_snapshot(origin, name, size, tags)
    try:
        yield snap
    except GeneratorExit:  # ExitStack.pop_all() kept it: the caller owns it now
        raise
    except BaseException as exc:
        try:
            with GATE.deferred():
                remove_volume(snap)
        except LeftBehindError as left:
            log.error("%s", left)
            exc.add_note(str(left))
        raise
    with GATE.deferred():
        remove_volume(snap)


def leftover_snapshots(tag: str = TAG) -> list[LogicalVolume]:
    """Snapshots carrying ``tag``: under the run lock, leftovers of a dead run."""
    return [lv for lv in list_volumes(names=(f"@{tag}",)) if lv.origin]


def is_open(lv: LogicalVolume) -> bool:
    """The device is open (a running guest, a mount, a holder): lv_attr's 6th flag."""
    return len(lv.attr) > 5 and lv.attr[5] == "o"


SECTOR = 512
GROWTH_SHARE = 20.0  # percent of the origin: what one growth of a COW snapshot adds


def round_up(n: int, unit: int) -> int:
    """``n`` up to a whole number of ``unit`` (an extent, a sector)."""
    return -(-n // unit) * unit


def growth_step(origin_size: int, extent: int, share: float = GROWTH_SHARE) -> int:
    """What one growth adds to a COW snapshot (the guard while a backup streams,
    ``checkpoint watch``): ``share`` percent of the origin, in whole extents."""
    return round_up(max(int(origin_size * share / 100), extent), extent)


def is_invalid(lv: LogicalVolume) -> bool:
    """A COW snapshot that overflowed, its data lost: LVM marks it invalid
    (``lv_snapshot_invalid``, and ``I`` in the 5th place of ``lv_attr``)."""
    return lv.snapshot_invalid or (len(lv.attr) > 4 and lv.attr[4] == "I")


def create_volume_argv(
    vg: str, name: str, size: int, thin_pool: str | None, tags: tuple[str, ...] = ()
) -> list[str]:
    """lvcreate takes whole 512-byte sectors (it rounds up to extents itself):
    an image of an odd size gets a volume that holds it."""
    size = round_up(size, SECTOR)
    argv = ["lvcreate", "--yes", "--name", name]
    for tag in tags:
        argv += ["--addtag", tag]
    if thin_pool:
        return [*argv, "--virtualsize", f"{size}b", "--thin", "--", f"{vg}/{thin_pool}"]
    return [*argv, "--size", f"{size}b", "--wipesignatures", "y", "--", vg]


def require_free(vg: str, names: list[str]) -> None:
    """Refuse names that an LV of ``vg`` already has (one ``lvs``)."""
    taken = {v.name for v in list_volumes(names=(vg,))}
    for name in names:
        if name in taken:
            raise ExistsError(f"{vg}/{name} already exists; refusing to overwrite it")


def check_room(vg: str, sizes: list[int], thin_pool: str | None) -> None:
    """Refuse, before creating anything, volumes the VG (or pool) has no room for."""
    if thin_pool:
        pool = find_volume(vg, thin_pool)
        if pool is None or pool.segtype != "thin-pool":
            raise NotFoundError(f"no thin pool {vg}/{thin_pool}")
        used = (pool.data_percent or 0.0) / 100 * pool.size
        if used + sum(sizes) > pool.size:
            log.warning(
                "thin pool %s/%s has %.0f MiB free for %.0f MiB of volumes: it is "
                "over-provisioned and must not fill up",
                vg,
                thin_pool,
                (pool.size - used) / 2**20,
                sum(sizes) / 2**20,
            )
        return
    group = volume_group(vg)
    need = sum(round_up(s, group.extent_size) for s in sizes)
    if need > group.free:
        raise NoSpaceError(
            f"volume group {vg} has {group.free} bytes free, the new volumes need {need}"
        )


@contextmanager
def new_volume(
    vg: str, name: str, size: int, thin_pool: str | None = None, *, tags: tuple[str, ...] = ()
) -> Iterator[LogicalVolume]:
    """Create an LV; remove it again if the body fails (kept on success).

    A signal that arrives while ``lvcreate`` runs is raised once it has
    finished, inside the ``try``: the LV it made is removed too."""
    if not valid_name(name):
        raise UsageError(f"{name!r} is not a valid LV name")
    require_free(vg, [name])
    made = False
    try:
        with GATE.deferred():
            runner.run(create_volume_argv(vg, name, size, thin_pool, tags), mutates=True)
            made = True
        yield _created(vg, name)
    except GeneratorExit:  # ExitStack.pop_all() kept it: the caller owns it now
        raise
    except BaseException as exc:
        if made:
            _discard_new(vg, name, exc)
        raise


def _created(vg: str, name: str) -> LogicalVolume:
    created = find_volume(vg, name)
    if created is None:
        raise LvmError(f"lvcreate reported success but {vg}/{name} is missing")
    return created


def _discard_new(vg: str, name: str, exc: BaseException) -> None:
    """Remove an LV this run created; a failure becomes a note on ``exc``."""
    try:
        with GATE.deferred():
            left = find_volume(vg, name)
            if left is not None:
                remove_volume(left)
    except (LeftBehindError, LvmError) as failed:  # not Interrupted: that is on its way
        log.error("%s", failed)
        exc.add_note(str(failed))


# ---------------------------------------------------------------- checkpoints


def valid_tag(tag: str) -> bool:
    """LVM tags: up to 1024 of ``A-Za-z0-9_+.-:/=!#&``, not starting with a dash
    (seen refused: ``,``, ``@``, spaces)."""
    return bool(_TAG_RE.match(tag))


def retag_argv(lv: LogicalVolume, add: tuple[str, ...], delete: tuple[str, ...]) -> list[str]:
    argv = ["lvchange"]
    for tag in delete:
        argv += ["--deltag", tag]
    for tag in add:
        argv += ["--addtag", tag]
    return [*argv, "--", lv.full_name]


def retag(lv: LogicalVolume, *, add: tuple[str, ...] = (), delete: tuple[str, ...] = ()) -> None:
    runner.run(retag_argv(lv, add, delete), mutates=True)


def tagged(tag: str) -> list[LogicalVolume]:
    """Every LV carrying ``tag``, hidden ones (a snapshot being merged) included."""
    return [lv for lv in list_volumes(hidden=True) if tag in lv.tags]


def merge_argv(snap: LogicalVolume) -> list[str]:
    return ["lvconvert", "--merge", "--yes", "--", snap.full_name]


MERGE_TIMEOUT = 24 * 3600.0  # a COW merge copies every changed chunk back


def merge(snap: LogicalVolume) -> None:
    """``lvconvert --merge``: a COW snapshot is copied back (lvconvert waits for
    it); a thin one replaces its origin at once.  With the origin open, LVM
    defers either until the origin is next activated (see :func:`reactivate`)."""
    runner.run(merge_argv(snap), mutates=True, timeout=MERGE_TIMEOUT)


def reactivate(lv: LogicalVolume) -> None:
    """Deactivate and activate again: starts a merge LVM deferred."""
    runner.run(["lvchange", "--activate", "n", "--", lv.full_name], mutates=True)
    runner.run(
        ["lvchange", "--activate", "y", "--ignoreactivationskip", "--", lv.full_name],
        mutates=True,
        timeout=MERGE_TIMEOUT,
    )


def extend_argv(lv: LogicalVolume, nbytes: int) -> list[str]:
    return ["lvextend", "--size", f"+{nbytes}b", "--", lv.full_name]


def extend(lv: LogicalVolume, nbytes: int) -> None:
    runner.run(extend_argv(lv, nbytes), mutates=True)
