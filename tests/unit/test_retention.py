"""Retention policy logic (restic/borg semantics) on explicit UTC times, and
pruning real format-3 backups built by backupkit, with the garbage collection."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from backupkit import chunk_path, edit_manifest, make_backup, random_bytes

from vmsnap import catalog, retention
from vmsnap.errors import IntegrityError, NotFoundError
from vmsnap.repo import refs
from vmsnap.repo.repository import Repository, open_local
from vmsnap.retention import Policy, decide


def t(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def kept(times: list[str], policy: Policy) -> list[str]:
    reasons = decide([t(x) for x in times], policy)
    return [x for x, why in zip(times, reasons, strict=True) if why]


DAYS = [  # oldest first; two backups on some days, a gap on the 4th
    "2026-11-01 02:00",
    "2026-11-02 02:00",
    "2026-11-02 14:00",
    "2026-11-03 02:00",
    "2026-11-05 02:00",
    "2026-11-05 14:00",
]


def test_keep_last_keeps_the_newest_n() -> None:
    assert kept(DAYS, Policy(keep_last=2)) == DAYS[-2:]
    assert kept(DAYS, Policy(keep_last=99)) == DAYS


def test_keep_daily_keeps_the_newest_of_each_of_the_n_latest_days_with_backups() -> None:
    assert kept(DAYS, Policy(keep_daily=3)) == [
        "2026-11-02 14:00",
        "2026-11-03 02:00",
        "2026-11-05 14:00",
    ]


def test_days_are_utc_days() -> None:
    times = ["2026-11-01 23:59", "2026-11-02 00:00"]
    assert kept(times, Policy(keep_daily=2)) == times
    assert kept(times, Policy(keep_daily=1)) == ["2026-11-02 00:00"]


def test_weeks_are_iso_weeks_across_the_new_year() -> None:
    # 2026-12-28 (Monday) to 2027-01-03 is ISO week 2026-W53
    times = ["2026-12-20 02:00", "2026-12-27 02:00", "2026-12-30 02:00", "2027-01-02 02:00"]
    assert kept(times, Policy(keep_weekly=2)) == ["2026-12-27 02:00", "2027-01-02 02:00"]
    reasons = decide([t(x) for x in times], Policy(keep_weekly=1))
    assert reasons[-1] == ("weekly 2026-W53",)


def test_keep_monthly() -> None:
    times = ["2026-09-30 02:00", "2026-10-01 02:00", "2026-10-31 02:00", "2026-11-01 02:00"]
    assert kept(times, Policy(keep_monthly=2)) == ["2026-10-31 02:00", "2026-11-01 02:00"]


def test_a_backup_kept_by_any_rule_is_kept_with_every_reason() -> None:
    reasons = decide([t(x) for x in DAYS], Policy(keep_last=1, keep_daily=2, keep_monthly=5))
    assert reasons[-1] == ("last", "daily 2026-11-05", "monthly 2026-11")
    assert reasons[3] == ("daily 2026-11-03",)
    assert [bool(r) for r in reasons] == [False, False, False, True, False, True]


def test_an_empty_policy_still_keeps_the_newest() -> None:
    assert kept(DAYS, Policy()) == [DAYS[-1]]
    assert decide([t(DAYS[0])], Policy())[0] == (retention.NEWEST,)
    assert decide([], Policy(keep_last=3)) == []
    assert Policy().empty
    assert not Policy(keep_weekly=1).empty


def test_input_order_does_not_matter_and_ties_keep_the_later_one() -> None:
    shuffled = [DAYS[3], DAYS[0], DAYS[5], DAYS[1]]
    assert kept(shuffled, Policy(keep_last=2)) == [DAYS[3], DAYS[5]]
    same = [t(DAYS[0]), t(DAYS[0])]
    assert decide(same, Policy(keep_last=1)) == [(), ("last",)]


# ---------------------------------------------------------------- in a repository


def stamp_of(text: str) -> str:
    return t(text).strftime("%Y%m%dT%H%M%SZ")


def backup_at(dest: Path, when: str, guest: str = "web01", data: bytes = b"x" * 1000) -> Path:
    """A backup created at ``when`` (make_backup takes its time from the stamp)."""
    return make_backup(dest, guest, stamp_of(when), disks={"vda": data})


def left(repo: Repository, guest: str = "web01") -> list[str]:
    return [r.stamp for r in refs.backups(repo, guest)]


def test_prune_removes_what_the_policy_does_not_keep(tmp_path: Path) -> None:
    for d in DAYS:
        backup_at(tmp_path, d)
    repo = open_local(tmp_path)
    run = retention.prune(repo, None, Policy(keep_daily=2), dry_run=False)
    assert [p.guest for p in run.plans] == ["web01"]
    assert [b.stamp for b, _why in run.plans[0].keep] == [stamp_of(DAYS[3]), stamp_of(DAYS[5])]
    assert left(repo) == [stamp_of(DAYS[3]), stamp_of(DAYS[5])]
    assert run.plans[0].errors == []
    gone = tmp_path / "backups" / "web01" / stamp_of(DAYS[0])
    assert not gone.exists() or list(gone.iterdir()) == []  # manifest, domain.xml, verified.json
    assert run.gc is not None
    assert (run.gc.manifests, run.gc.garbage) == (2, 0)  # one chunk, shared by all


def test_prune_frees_only_the_unique_chunks_and_the_rest_restores(tmp_path: Path) -> None:
    shared = random_bytes(4 << 20, 1)
    old = backup_at(tmp_path, DAYS[0], data=shared + random_bytes(5000, 2))
    new = backup_at(tmp_path, DAYS[1], data=shared + random_bytes(5000, 3))
    repo = open_local(tmp_path)
    [guest] = catalog.scan(repo)
    unique = chunk_path(tmp_path, old, "vda", 1).stat().st_size
    newer = chunk_path(tmp_path, new, "vda", 1).stat().st_size
    assert [b.unique_bytes for b in guest.backups] == [unique, newer]
    dry = retention.prune(repo, None, Policy(keep_last=1), dry_run=True)
    assert dry.gc is not None
    assert (dry.gc.dry_run, dry.gc.garbage, dry.gc.garbage_bytes) == (True, 1, unique)
    assert left(repo) == [old.name, new.name]  # nothing deleted
    run = retention.prune(repo, None, Policy(keep_last=1), dry_run=False)
    assert run.gc is not None
    assert (run.gc.garbage, run.gc.garbage_bytes) == (1, unique)
    assert chunk_path(tmp_path, new, "vda", 0).exists()  # shared: kept
    assert chunk_path(tmp_path, new, "vda", 1).exists()
    assert left(repo) == [new.name]


def test_dry_run_removes_nothing(tmp_path: Path) -> None:
    for d in DAYS:
        backup_at(tmp_path, d)
    repo = open_local(tmp_path)
    run = retention.prune(repo, ["web01"], Policy(keep_last=1), dry_run=True)
    assert len(run.plans[0].remove) == 5
    assert len(left(repo)) == 6


def test_bad_backups_are_ignored_never_counted_nor_deleted(tmp_path: Path) -> None:
    old, broken, failed, new = (backup_at(tmp_path, d) for d in DAYS[:4])
    repo = open_local(tmp_path)
    edit_manifest(broken, lambda doc: doc.update(host="evil"))  # the seal no longer matches
    catalog.record_verified(refs.find_exact(repo, "web01", failed.name), "CORRUPT", 0)
    with pytest.raises(IntegrityError, match="garbage collection stopped before deleting anything"):
        retention.prune(repo, None, Policy(keep_last=1), dry_run=False)
    assert left(repo) == [broken.name, failed.name, new.name]  # old's manifest went first
    plans = retention.plan(repo, None, Policy(keep_last=1))
    assert sorted(b.stamp for b in plans[0].ignored) == [broken.name, failed.name]
    assert plans[0].remove == []
    assert old.name not in left(repo)


def test_a_never_published_backup_older_than_a_day_is_collected(tmp_path: Path) -> None:
    backup_at(tmp_path, DAYS[0])
    repo = open_local(tmp_path)
    orphan = tmp_path / "backups" / "web01" / stamp_of(DAYS[1])
    orphan.mkdir()
    (orphan / "domain.xml").write_text("<domain/>")  # a backup killed before its manifest
    recent = tmp_path / "backups" / "web01" / "29991231T000000Z"
    recent.mkdir()
    (recent / "domain.xml").write_text("<domain/>")  # one being written now
    run = retention.prune(repo, None, Policy(keep_last=1), dry_run=False)
    assert run.gc is not None
    assert run.gc.orphans == (f"backups/web01/{orphan.name}/",)
    assert not (orphan / "domain.xml").exists()
    assert (recent / "domain.xml").exists()


def test_unknown_guest_is_not_found(tmp_path: Path) -> None:
    backup_at(tmp_path, DAYS[0])
    with pytest.raises(NotFoundError, match="no backups of web99"):
        retention.plan(open_local(tmp_path), ["web99"], Policy(keep_last=1))
