"""Undo what a dead run left: resume and thaw the guests its journal names,
remove its unpublished folders, the new LVs it had not finished filling, and
every snapshot tagged ``vmsnap``.

Runs under the run lock (so nothing it finds belongs to a live run), on its
own (``vmsnap cleanup``) and at the start of every backup and clone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from vmsnap import journal, lvm, quiesce, virt
from vmsnap.errors import LeftBehindError, VmsnapError

log = logging.getLogger(__name__)


@dataclass
class CleanupReport:
    resumed: list[str] = field(default_factory=list)
    thawed: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)  # unfinished new LVs removed
    problems: list[str] = field(default_factory=list)
    unresolved: list[journal.GuestEntry] = field(default_factory=list)
    unremoved: list[str] = field(default_factory=list)  # unfinished LVs still there

    @property
    def nothing(self) -> bool:
        return not (self.resumed or self.thawed or self.snapshots or self.volumes)


def _release_guest(
    entry: journal.GuestEntry, report: CleanupReport, dry_run: bool, default_uri: str | None
) -> None:
    """Resume a guest the dead run paused (only if it is still paused), or thaw
    one it froze (thawing a thawed guest is harmless).  The journal names the
    connection the run used; ``default_uri`` serves only where it does not."""
    with virt.connection(entry.uri or default_uri) as conn:
        dom = conn.domain_by_uuid(entry.uuid)
        if dom is None:
            log.info("guest %s (%s) is gone; nothing to release", entry.name, entry.uuid)
            return
        state = dom.state()
        if entry.action == "pause" and state == "paused":
            if not dry_run:
                dom.resume()
            report.resumed.append(entry.name)
        elif entry.action == "freeze" and state in virt.RUNNING_STATES:
            if not dry_run:
                dom.set_agent_timeout(quiesce.agent_timeout())
                dom.thaw()
            report.thawed.append(entry.name)


def _remove_unfinished(names: list[str], report: CleanupReport, dry_run: bool) -> None:
    """The new LVs a dead restore or clone was filling: removed if they still
    carry the unfinished tag (one that lost it was complete and is kept; one
    that is gone was never made, or removed already)."""
    if not names:
        return
    unfinished = {lv.full_name: lv for lv in lvm.tagged(lvm.UNFINISHED_TAG)}
    for name in names:
        lv = unfinished.get(name)
        if lv is None:
            continue
        if not dry_run:
            log.warning("removing %s, left half-written by a run that died", name)
        try:
            if not dry_run:
                lvm.remove_volume(lv)
            report.volumes.append(name)
        except LeftBehindError as exc:
            report.problems.append(str(exc))
            report.unremoved.append(name)


def _sweep_snapshots(report: CleanupReport, dry_run: bool) -> None:
    for snap in lvm.leftover_snapshots():
        if not dry_run:
            log.warning("removing snapshot %s left by an earlier run", snap.full_name)
        try:
            if not dry_run:
                lvm.remove_volume(snap)
            report.snapshots.append(snap.full_name)
        except LeftBehindError as exc:
            report.problems.append(str(exc))


def cleanup(*, dry_run: bool = False, default_uri: str | None = None) -> CleanupReport:
    """Call under the run lock."""
    report = CleanupReport()
    left = journal.load_left()
    if left is not None:
        for entry in left.guests:
            try:
                _release_guest(entry, report, dry_run, default_uri)
            except VmsnapError as exc:
                report.problems.append(f"{entry.name}: {exc}")
                report.unresolved.append(entry)
        _remove_unfinished(left.volumes, report, dry_run)
    _sweep_snapshots(report, dry_run)
    if dry_run:
        return report
    if left is not None:
        if report.unresolved or report.unremoved:  # keep them on record for the next attempt
            journal.Journal.start(carry=report.unresolved, volumes=report.unremoved).close()
        else:
            journal.discard_left()
    for name in report.resumed:
        log.warning("resumed guest %s, paused by a run that died", name)
    for name in report.thawed:
        log.warning("thawed guest %s, frozen by a run that died", name)
    for problem in report.problems:
        log.error("cleanup: %s", problem)
    return report
