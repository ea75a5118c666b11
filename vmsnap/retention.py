"""Retention: which backups a policy keeps (restic/borg semantics), and pruning
the rest.

The policy logic is pure (:func:`decide`).  Going newest first, ``last N``
keeps the N newest backups; ``daily N`` keeps the newest backup of each of the
N most recent UTC days that have a backup; ``weekly`` goes by ISO year and
week, ``monthly`` by year and month.  A backup kept by any rule is kept.  The
newest good backup of a guest is always kept, even by an empty policy.

Only good backups take part (a sealed manifest, and no failed verify); others
are listed as ignored and never deleted.  Pruning deletes each dropped
backup's manifest first (it is then no longer a backup), then its other
objects, then collects the garbage (:mod:`vmsnap.repo.gc`): the chunks no
remaining manifest names.  All of it under the run lock, so never while a
backup on this host writes to the repository.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

from vmsnap import catalog
from vmsnap.catalog import GuestBackups, Stored
from vmsnap.errors import DestinationError, LockedError, LockLostError
from vmsnap.lock import run_lock
from vmsnap.repo import gc, locks
from vmsnap.repo.gc import GcReport
from vmsnap.repo.repository import Repository

log = logging.getLogger(__name__)

NEWEST = "newest"


@dataclass(frozen=True)
class Policy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_BUCKETS: tuple[tuple[str, str, Callable[[datetime], str] | None], ...] = (
    ("last", "keep_last", None),  # every backup is its own bucket
    ("daily", "keep_daily", lambda t: t.strftime("%Y-%m-%d")),
    ("weekly", "keep_weekly", lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])),
    ("monthly", "keep_monthly", lambda t: t.strftime("%Y-%m")),
)


def decide(created: Sequence[datetime], policy: Policy) -> list[tuple[str, ...]]:
    """For each backup (its UTC creation time), the reasons to keep it; an empty
    tuple means remove it.  Ties keep the later one in ``created``'s order."""
    order = sorted(range(len(created)), key=lambda i: (created[i], i), reverse=True)
    reasons: list[list[str]] = [[] for _ in created]
    for rule, attr, bucket in _BUCKETS:
        left, last = getattr(policy, attr), None
        for i in order:
            key = str(i) if bucket is None else bucket(created[i])
            if left > 0 and key != last:
                reasons[i].append(rule if bucket is None else f"{rule} {key}")
                left -= 1
            last = key
    if order and not any(reasons):
        reasons[order[0]].append(NEWEST)
    return [tuple(r) for r in reasons]


# ---------------------------------------------------------------- a plan


@dataclass
class GuestPrune:
    guest: str
    label: str  # REPO/backups/<guest>
    keep: list[tuple[Stored, tuple[str, ...]]] = field(default_factory=list)
    remove: list[Stored] = field(default_factory=list)
    ignored: list[Stored] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PruneRun:
    plans: list[GuestPrune]
    gc: GcReport | None  # None when a removal failed or the repository was in use
    locked: str | None = None  # why the collection did not run: another host's run


def plan_guest(found: GuestBackups, policy: Policy) -> GuestPrune:
    plan = GuestPrune(found.guest, found.label)
    good = [b for b in found.backups if b.good]
    plan.ignored = [b for b in found.backups if not b.good]
    times = [b.created for b in good if b.created is not None]  # a good one has a manifest
    for backup, why in zip(good, decide(times, policy), strict=True):
        if why:
            plan.keep.append((backup, why))
        else:
            plan.remove.append(backup)
    return plan


def plan(repo: Repository, guests: list[str] | None, policy: Policy) -> list[GuestPrune]:
    return [plan_guest(found, policy) for found in catalog.scan(repo, guests)]


# ---------------------------------------------------------------- pruning


def _remove(backup: Stored) -> str | None:
    """Delete one backup: its manifest first (then it is no backup any more),
    then domain.xml and verified.json; its chunks are the collection's."""
    ref = backup.ref
    try:
        for name in (ref.manifest_name, ref.domain_xml_name, ref.verified_name):
            ref.repo.backend.delete(name)
    except (OSError, DestinationError) as exc:
        return f"cannot remove {ref.label}: {getattr(exc, 'strerror', None) or exc}"
    return None


def apply(plans: list[GuestPrune]) -> None:
    """Delete the backups the plans do not keep."""
    for p in plans:
        for backup in p.remove:
            error = _remove(backup)
            if error is None:
                log.info("removed %s", backup.ref.label)
            else:
                p.errors.append(error)


def prune(repo: Repository, guests: list[str] | None, policy: Policy, *, dry_run: bool) -> PruneRun:
    """Plan, and unless ``dry_run`` delete and collect, under the run lock;
    a dry run says what a collection would free without the dropped manifests."""
    if dry_run:
        plans = plan(repo, guests, policy)
        dropped = [b.ref.manifest_name for p in plans for b in p.remove]
        return PruneRun(plans, gc.collect(repo, dry_run=True, without=dropped))
    with run_lock():
        plans = plan(repo, guests, policy)
        apply(plans)
        failed = any(p.errors for p in plans)
        if failed:
            return PruneRun(plans, None)
        try:
            with locks.repo_lock(repo, locks.EXCLUSIVE, command="prune") as held:
                locks.remove_stale(repo, held)
                return PruneRun(plans, gc.collect(repo, dry_run=False, held=held))
        except LockedError as exc:
            if isinstance(exc, LockLostError):
                raise
            return PruneRun(plans, None, f"garbage collection skipped: {exc}")
