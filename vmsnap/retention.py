"""Retention: which backups a policy keeps (restic/borg semantics), and pruning
the rest.

The policy logic is pure (:func:`decide`).  Going newest first, ``last N``
keeps the N newest backups; ``daily N`` keeps the newest backup of each of the
N most recent UTC days that have a backup; ``weekly`` goes by ISO year and
week, ``monthly`` by year and month.  A backup kept by any rule is kept.  The
newest good backup of a guest is always kept, even by an empty policy.

Only good backups take part (a sealed manifest, and no failed verify); others
are listed as ignored and never deleted.  Unpublished ``.partial`` folders are
removed, under the run lock, so never one that a running backup is writing.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

from vmsnap import catalog, store
from vmsnap.catalog import GuestFolder, Stored
from vmsnap.lock import run_lock

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
    folder: Path
    keep: list[tuple[Stored, tuple[str, ...]]] = field(default_factory=list)
    remove: list[Stored] = field(default_factory=list)
    ignored: list[Stored] = field(default_factory=list)
    partials: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def plan_guest(found: GuestFolder, policy: Policy) -> GuestPrune:
    plan = GuestPrune(found.guest, found.folder, partials=list(found.partials))
    good = [b for b in found.backups if b.good]
    plan.ignored = [b for b in found.backups if not b.good]
    times = [b.created for b in good if b.created is not None]  # a good one has a manifest
    for backup, why in zip(good, decide(times, policy), strict=True):
        if why:
            plan.keep.append((backup, why))
        else:
            plan.remove.append(backup)
    return plan


def plan(dest: Path, domains: list[str] | None, policy: Policy) -> list[GuestPrune]:
    return [plan_guest(found, policy) for found in catalog.scan(dest, domains)]


# ---------------------------------------------------------------- pruning


def _remove(path: Path, folder: Path) -> str | None:
    """Delete one folder of ``folder``: first renamed to a ``.partial`` name (an
    interrupted prune never leaves half a backup that looks whole)."""
    if path.parent != folder or path.is_symlink() or not path.is_dir():
        return f"{path}: not a folder of {folder}; left alone"
    try:
        if not path.name.endswith(store.PARTIAL_SUFFIX):
            doomed = folder / f"{path.name}-pruned{store.PARTIAL_SUFFIX}"
            os.rename(path, doomed)
            path = doomed
        shutil.rmtree(path)
    except OSError as exc:
        return f"cannot remove {path}: {exc.strerror}"
    return None


def apply(plans: list[GuestPrune]) -> None:
    """Remove the partial folders and the backups the plans do not keep."""
    for p in plans:
        for path in [*p.partials, *(b.directory for b in p.remove)]:
            error = _remove(path, p.folder)
            if error is None:
                log.info("removed %s", path)
            else:
                p.errors.append(error)
        if p.remove or p.partials:
            store.fsync_dir(p.folder)


def prune(
    dest: Path, domains: list[str] | None, policy: Policy, *, dry_run: bool
) -> list[GuestPrune]:
    """Plan, and unless ``dry_run`` prune, under the run lock."""
    if dry_run:
        return plan(dest, domains, policy)
    with run_lock():
        plans = plan(dest, domains, policy)
        apply(plans)
    return plans
