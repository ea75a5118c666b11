"""Checkpoints: all of a guest's LVs snapshotted in one quiesce window and
kept, to roll back to (merge) if an upgrade goes wrong, or to release.

A checkpoint's snapshots are taken like a backup's (tagged ``vmsnap``, so that
a crash half-way leaves only what ``vmsnap cleanup`` sweeps), then retagged
``vmsnap_checkpoint``, with tags for the guest's UUID, the label, the disk,
and the creation and expiry times.  Everything about a checkpoint is read
back from LVM: there is no other state.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from vmsnap import hooks, lvm
from vmsnap.discover import Inventory, describe
from vmsnap.errors import (
    DestinationError,
    IntegrityError,
    LeftBehindError,
    LibvirtError,
    LvmError,
    NoSpaceError,
    NotFoundError,
    UsageError,
    VmsnapError,
)
from vmsnap.hooks import Hooks, Scope
from vmsnap.job import run_job
from vmsnap.journal import Journal
from vmsnap.lock import run_lock
from vmsnap.models import (
    FILL_WARNING,
    SHUTDOWN_TIMEOUT,
    LogicalVolume,
    QuiesceMode,
    SizeSpec,
    human_size,
)
from vmsnap.snapshots import DEFAULT_POOL_LIMIT, guest_snapshots, new_run_id, plan_guest, run_tags
from vmsnap.virt import Connection, Domain

log = logging.getLogger(__name__)

KIND = "ckpt"  # snapshot names: <origin>-ckpt-<id>
PREFIX = "vmsnap_cp_"
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+.-]{0,63}$")
STEP_SHARE = 20.0  # watch grows a snapshot by this share of its origin
MERGE_POLL = 1.0
_DURATION_RE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``90m``, ``12h``, ``3d``, ``1w``, ``1d12h``: seconds."""
    text = text.strip().lower()
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"bad duration {text!r}: use e.g. 90m, 12h, 3d, 1w")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"bad duration {text!r}: must be more than zero")
    return float(seconds)


def check_label(label: str) -> str:
    if not LABEL_RE.match(label):
        raise UsageError(
            f"bad checkpoint label {label!r}: up to 64 letters, digits, _ + . -, "
            "starting with a letter or digit"
        )
    return label


def _tag(key: str, value: str | int) -> str:
    return f"{PREFIX}{key}:{value}"


def checkpoint_tags(
    dom: Domain, label: str, target: str, created: float, expires: float | None
) -> tuple[str, ...]:
    tags = [
        lvm.CHECKPOINT_TAG,
        _tag("uuid", dom.uuid),
        _tag("label", label),
        _tag("target", target),
        _tag("created", int(created)),
    ]
    if lvm.valid_tag(_tag("name", dom.name)):
        tags.append(_tag("name", dom.name))
    if expires is not None:
        tags.append(_tag("expires", int(expires)))
    return tuple(tags)


def _values(tags: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for tag in tags:
        if tag.startswith(PREFIX) and ":" in tag:
            key, _sep, value = tag[len(PREFIX) :].partition(":")
            found[key] = value
    return found


@dataclass(frozen=True)
class CheckpointDisk:
    target: str
    snapshot: LogicalVolume
    origin: LogicalVolume | None
    pool: LogicalVolume | None = None  # a thin snapshot's pool

    @property
    def invalid(self) -> bool:
        """A COW snapshot that overflowed ('I' in lv_attr's 5th place): lost."""
        attr = self.snapshot.attr
        return self.snapshot.snapshot_invalid or (len(attr) > 4 and attr[4] == "I")

    @property
    def fill(self) -> float | None:
        """COW fill in percent; None for a thin snapshot (its pool fills instead)."""
        return None if self.snapshot.is_thin else (self.snapshot.snap_percent or 0.0)

    @property
    def cow_left(self) -> int | None:
        fill = self.fill
        return None if fill is None else int(self.snapshot.size * (100 - fill) / 100)

    @property
    def pool_fill(self) -> float | None:
        return self.pool.data_percent if self.pool is not None else None


@dataclass(frozen=True)
class Checkpoint:
    uuid: str
    name: str
    label: str
    created: float
    expires: float | None
    disks: tuple[CheckpointDisk, ...]

    @property
    def invalid(self) -> bool:
        return any(d.invalid for d in self.disks)

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    @property
    def title(self) -> str:
        return f"{self.name or self.uuid} {self.label}"


def group_checkpoints(volumes: list[LogicalVolume]) -> list[Checkpoint]:
    """Checkpoints from an ``lvs -a`` listing (pure: the tests feed it)."""
    by_name = {v.full_name: v for v in volumes}
    groups: dict[tuple[str, str], list[tuple[dict[str, str], CheckpointDisk]]] = {}
    for lv in volumes:
        if lvm.CHECKPOINT_TAG not in lv.tags:
            continue
        values = _values(lv.tags)
        origin = by_name.get(f"{lv.vg}/{lv.origin}") if lv.origin else None
        pool = by_name.get(f"{lv.vg}/{lv.pool}") if lv.is_thin and lv.pool else None
        disk = CheckpointDisk(values.get("target", "?"), lv, origin, pool)
        groups.setdefault((values.get("uuid", ""), values.get("label", "")), []).append(
            (values, disk)
        )
    found = []
    for (uuid, label), members in groups.items():
        values = {k: v for each, _disk in members for k, v in each.items()}
        expires = values.get("expires")
        found.append(
            Checkpoint(
                uuid=uuid,
                name=values.get("name", ""),
                label=label,
                created=float(values.get("created", "0")),
                expires=float(expires) if expires else None,
                disks=tuple(sorted((d for _v, d in members), key=lambda d: d.target)),
            )
        )
    return sorted(found, key=lambda c: (c.name, c.created, c.label))


def checkpoints(uuid: str | None = None) -> list[Checkpoint]:
    found = group_checkpoints(lvm.list_volumes(hidden=True))
    return [c for c in found if uuid is None or c.uuid == uuid]


def guest_checkpoints(conn: Connection, name: str) -> list[Checkpoint]:
    """A guest's checkpoints, by its UUID; by the name tag if it is gone."""
    try:
        return of_domain(conn.domain(name))
    except NotFoundError:
        return [c for c in checkpoints() if c.name == name]


def of_domain(dom: Domain) -> list[Checkpoint]:
    """By UUID; else by name, with a warning (a guest defined again gets a new UUID)."""
    every = checkpoints()
    found = [c for c in every if c.uuid == dom.uuid]
    if found:
        return found
    named = [c for c in every if c.name == dom.name]
    for cp in named:
        log.warning(
            "checkpoint %s was made for UUID %s; %s now has UUID %s",
            cp.label,
            cp.uuid,
            dom.name,
            dom.uuid,
        )
    return named


def choose(found: list[Checkpoint], name: str, label: str | None) -> Checkpoint:
    if label is not None:
        match = [c for c in found if c.label == label]
        if not match:
            raise NotFoundError(f"{name} has no checkpoint {label!r}")
        return match[0]
    if not found:
        raise NotFoundError(f"{name} has no checkpoint")
    if len(found) > 1:
        labels = ", ".join(c.label for c in found)
        raise UsageError(f"{name} has several checkpoints ({labels}): name one")
    return found[0]


# ---------------------------------------------------------------- create


@dataclass(frozen=True)
class CreateSettings:
    label: str
    quiesce: QuiesceMode = QuiesceMode.AUTO
    snapshot_size: SizeSpec | None = None
    expire: float | None = None  # seconds from now
    thin_pool_limit: float = DEFAULT_POOL_LIMIT
    hooks: Hooks = field(default_factory=Hooks.from_environment)


def create(conn: Connection, name: str, settings: CreateSettings) -> Checkpoint:
    """Snapshot every LV of the guest in one quiesce window and keep them.
    Under the run lock, with the run journal, like a backup."""
    conn.require_local()
    label = check_label(settings.label)
    dom = conn.domain(name)
    run_id = new_run_id()
    scope = settings.hooks.scope(
        VMSNAP_COMMAND="checkpoint", VMSNAP_RUN_ID=run_id, VMSNAP_LABEL=label
    ).bind(VMSNAP_DOMAIN=dom.name, VMSNAP_DOMAIN_UUID=dom.uuid)
    with run_job(
        scope, end=hooks.CHECKPOINT_END, abort=hooks.CHECKPOINT_ABORT, job_phases=False
    ) as job:
        if any(c.label == label for c in of_domain(dom)):
            raise UsageError(f"{name} already has a checkpoint {label!r}")
        _take(conn, dom, settings, run_id, job.journal, scope)
        made = choose(of_domain(dom), name, label)
        job.end_env["VMSNAP_SNAPSHOTS"] = _paths(made)
    return made


def _paths(cp: Checkpoint) -> str:
    return " ".join(d.snapshot.path for d in cp.disks)


def _take(
    conn: Connection,
    dom: Domain,
    settings: CreateSettings,
    run_id: str,
    journal: Journal,
    scope: Scope,
) -> None:
    plan = plan_guest(
        describe(dom, Inventory.load(), conn),
        run_id=run_id,
        snapshot_size=settings.snapshot_size,
        thin_pool_limit=settings.thin_pool_limit,
        purpose=KIND,
    )
    created = time.time()
    expires = created + settings.expire if settings.expire else None
    tags_of_run = run_tags(run_id)
    with guest_snapshots(
        dom,
        plan,
        settings.quiesce,
        journal=journal,
        uri=conn.uri,
        tags=tags_of_run,
        scope=scope,
        keep=True,
    ) as (_window, snaps):
        # until here a crash leaves backup-like snapshots that cleanup sweeps
        for disk, snap in zip(plan.disks, snaps, strict=True):
            tags = checkpoint_tags(dom, settings.label, disk.target, created, expires)
            lvm.retag(snap, add=tags, delete=tags_of_run)


# ---------------------------------------------------------------- rollback


def _require_shutoff(dom: Domain, shutdown: bool, timeout: float) -> None:
    state = dom.state()
    if state == "shutoff":
        return
    if not shutdown:
        raise DestinationError(
            f"{dom.name} is {state}: a rollback needs the guest shut off",
            hint="shut it down first, or pass --shutdown",
        )
    log.info("shutting %s down (waiting up to %.0f s)", dom.name, timeout)
    dom.shutdown()
    if not dom.wait_shutoff(timeout):
        raise LibvirtError(
            f"{dom.name} did not shut down within {timeout:.0f} s and is still "
            f"{dom.state()}; vmsnap does not force a guest off",
            hint=f"virsh destroy {dom.name}, then run the rollback again",
        )


def check_valid(cp: Checkpoint) -> None:
    """An overflowed snapshot lost the checkpoint-time data: refuse to merge it."""
    for disk in cp.disks:
        if disk.invalid:
            raise IntegrityError(
                f"checkpoint {cp.title} is invalid: snapshot {disk.snapshot.full_name} "
                f"({disk.target}) overflowed its {human_size(disk.snapshot.size)} of COW "
                "space, so the checkpoint-time data of that disk is lost; LVM cannot merge it",
                hint="release the checkpoint (vmsnap checkpoint release)",
            )


def check_rollback(cp: Checkpoint) -> None:
    """Everything that refuses a rollback of a shut-off guest, before any merge."""
    check_valid(cp)
    for disk in cp.disks:
        if disk.origin is None:
            raise NotFoundError(f"the origin of {disk.snapshot.full_name} is gone")
        if lvm.is_open(disk.origin):
            raise DestinationError(
                f"{disk.origin.full_name} is in use (a running guest, a mount): "
                "LVM would only merge it at its next activation"
            )


def rollback(
    conn: Connection,
    name: str,
    label: str | None,
    *,
    shutdown: bool = False,
    start: bool = False,
    hooks_settings: Hooks | None = None,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
) -> Checkpoint:
    """Merge the checkpoint back into the guest's LVs, the guest shut off
    (``shutdown``: shut it down cleanly first); ``start`` it afterwards."""
    conn.require_local()
    with run_lock():
        dom = conn.domain(name)
        cp = choose(of_domain(dom), name, label)
        check_valid(cp)
        scope = (hooks_settings or Hooks.from_environment()).scope(
            VMSNAP_COMMAND="checkpoint",
            VMSNAP_DOMAIN=dom.name,
            VMSNAP_DOMAIN_UUID=dom.uuid,
            VMSNAP_LABEL=cp.label,
            VMSNAP_SNAPSHOTS=_paths(cp),
        )
        scope.run(hooks.PRE_ROLLBACK)
        _require_shutoff(dom, shutdown, shutdown_timeout)
        cp = choose(of_domain(dom), name, cp.label)  # fresh: the guest closed its LVs
        check_rollback(cp)
        for disk in cp.disks:
            log.info("merging %s back into %s", disk.snapshot.full_name, disk.target)
            lvm.merge(disk.snapshot)
        finish_merges(cp)
        scope.run(hooks.POST_ROLLBACK)
        if start:
            dom.start()
    return cp


def finish_merges(cp: Checkpoint, timeout: float = lvm.MERGE_TIMEOUT) -> None:
    """Wait until every snapshot is merged away.  LVM defers a merge whose
    origin was open (or inactive) to the origin's next activation: if one is
    still there, deactivate and activate the origin, then wait."""
    deadline = time.monotonic() + timeout
    reactivated: set[str] = set()
    while True:
        left = {v.full_name: v for v in lvm.list_volumes(hidden=True)}
        pending = [d for d in cp.disks if d.snapshot.full_name in left]
        if not pending:
            break
        for disk in pending:
            snap = left[disk.snapshot.full_name]
            if disk.origin is not None and disk.origin.full_name not in reactivated:
                log.info("merge of %s deferred by LVM: reactivating its origin", snap.full_name)
                lvm.reactivate(disk.origin)
                reactivated.add(disk.origin.full_name)
            elif snap.snap_percent is not None:
                log.info("merging %s: %.1f%% left", snap.full_name, snap.snap_percent)
        if time.monotonic() >= deadline:
            names = ", ".join(d.snapshot.full_name for d in pending)
            raise LvmError(f"merge of {names} not finished: it goes on in the background")
        time.sleep(MERGE_POLL)
    _untag_origins(cp)


def _untag_origins(cp: Checkpoint) -> None:
    """A merged thin snapshot takes its origin's place: keep no checkpoint tag on it."""
    for disk in cp.disks:
        if disk.origin is None:
            continue
        now = lvm.find_volume(disk.origin.vg, disk.origin.name)
        ours = tuple(t for t in now.tags if t.startswith(PREFIX)) if now else ()
        if now is not None and (ours or lvm.CHECKPOINT_TAG in now.tags):
            lvm.retag(now, delete=(lvm.CHECKPOINT_TAG, *ours))


# ---------------------------------------------------------------- release


def remove(cp: Checkpoint) -> None:
    """Remove every snapshot of the checkpoint; LeftBehindError names the rest."""
    problems = []
    for disk in cp.disks:
        try:
            lvm.remove_volume(disk.snapshot)
        except LeftBehindError as exc:
            problems.append(str(exc))
    if problems:
        raise LeftBehindError("; ".join(problems))


def release(
    conn: Connection, name: str, label: str | None, hooks_settings: Hooks | None = None
) -> Checkpoint:
    with run_lock():
        cp = choose(guest_checkpoints(conn, name), name, label)
        remove(cp)
    (hooks_settings or Hooks.from_environment()).scope(
        VMSNAP_COMMAND="checkpoint",
        VMSNAP_DOMAIN=name,
        VMSNAP_DOMAIN_UUID=cp.uuid,
        VMSNAP_LABEL=cp.label,
    ).run(hooks.POST_RELEASE)
    return cp


# ---------------------------------------------------------------- watch


@dataclass
class WatchReport:
    actions: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    full: list[str] = field(default_factory=list)  # could not be extended

    @property
    def error(self) -> VmsnapError | None:
        if self.invalid:
            return IntegrityError("; ".join(self.invalid))
        if self.full:
            return NoSpaceError("; ".join(self.full))
        return None


def _step(origin: LogicalVolume, extent: int, share: float) -> int:
    step = max(int(origin.size * share / 100), extent)
    return -(-step // extent) * extent


def _watch_disk(
    cp: Checkpoint, disk: CheckpointDisk, report: WatchReport, threshold: float
) -> None:
    where = f"{cp.title} {disk.target} ({disk.snapshot.full_name})"
    fill = disk.fill
    if disk.invalid:
        report.invalid.append(f"{where}: overflowed, lost")
    elif fill is not None and fill >= threshold and disk.origin is not None:
        vg = lvm.volume_group(disk.snapshot.vg)
        step = _step(disk.origin, vg.extent_size, STEP_SHARE)
        if vg.free < step:
            report.full.append(
                f"{where}: {fill:.0f}% full and VG {vg.name} has only {human_size(vg.free)} free"
            )
            return
        lvm.extend(disk.snapshot, step)
        report.actions.append(f"extended {where} by {human_size(step)} ({fill:.0f}% full)")
    elif disk.pool_fill is not None and disk.pool_fill >= threshold and disk.pool is not None:
        report.actions.append(
            f"warning: {where}: thin pool {disk.pool.full_name} is {disk.pool_fill:.0f}% full"
        )


def watch(*, threshold: float = FILL_WARNING, now: float | None = None) -> WatchReport:
    """Release expired checkpoints, grow COW snapshots past ``threshold`` while
    their VG has room, report invalid ones.  Under the run lock."""
    report = WatchReport()
    with run_lock():
        moment = time.time() if now is None else now
        for cp in checkpoints():
            if cp.expired(moment):
                remove(cp)
                report.actions.append(f"released {cp.title}: expired")
                continue
            for disk in cp.disks:
                _watch_disk(cp, disk, report, threshold)
    return report
