"""Retention policy logic (restic/borg semantics) on explicit UTC times, and
pruning real backup folders built by backupkit."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backupkit import edit_manifest, make_backup

from vmsnap import catalog, retention
from vmsnap.errors import NotFoundError
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


# ---------------------------------------------------------------- on real folders


def stamp_of(text: str) -> str:
    return t(text).strftime("%Y%m%dT%H%M%SZ")


def backup_at(dest: Path, when: str, guest: str = "web01") -> Path:
    folder = make_backup(dest, guest, stamp_of(when), disks={"vda": b"x" * 1000})
    created = t(when).strftime("%Y-%m-%dT%H:%M:%SZ")
    edit_manifest(folder, lambda doc: doc.update(created=created), reseal=True)
    return folder


def names(paths: list[Path]) -> list[str]:
    return sorted(p.name for p in paths)


def test_prune_removes_what_the_policy_does_not_keep(tmp_path: Path) -> None:
    folders = [backup_at(tmp_path, d) for d in DAYS]
    plans = retention.prune(tmp_path, None, Policy(keep_daily=2), dry_run=False)
    assert [p.guest for p in plans] == ["web01"]
    assert names([b.directory for b, _why in plans[0].keep]) == names([folders[3], folders[5]])
    assert names(list((tmp_path / "web01").iterdir())) == names([folders[3], folders[5]])
    assert plans[0].errors == []


def test_dry_run_removes_nothing(tmp_path: Path) -> None:
    folders = [backup_at(tmp_path, d) for d in DAYS]
    plans = retention.prune(tmp_path, ["web01"], Policy(keep_last=1), dry_run=True)
    assert len(plans[0].remove) == 5
    assert all(f.is_dir() for f in folders)


def test_bad_backups_are_ignored_never_counted_nor_deleted(tmp_path: Path) -> None:
    old, broken, failed, new = (backup_at(tmp_path, d) for d in DAYS[:4])
    edit_manifest(broken, lambda doc: doc.update(host="evil"))  # the seal no longer matches
    catalog.record_verified(failed, "CORRUPT", 0)
    plans = retention.prune(tmp_path, None, Policy(keep_last=1), dry_run=False)
    assert names([b.directory for b in plans[0].ignored]) == names([broken, failed])
    assert (old.exists(), broken.exists(), failed.exists(), new.exists()) == (
        False,
        True,
        True,
        True,
    )


def test_partials_are_removed_and_symlinks_never_followed(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    backup_at(dest, DAYS[0])
    partial = dest / "web01" / f"{stamp_of(DAYS[1])}.partial"
    partial.mkdir()
    outside = tmp_path / "outside"
    kept_elsewhere = backup_at(outside, DAYS[0], "db01")
    os.symlink(outside / "db01", dest / "db01")  # a guest folder that is a link
    os.symlink(kept_elsewhere, dest / "web01" / stamp_of(DAYS[2]))  # a backup that is a link
    plans = retention.prune(dest, None, Policy(keep_last=1), dry_run=False)
    assert [p.guest for p in plans] == ["web01"]
    assert not partial.exists()
    assert kept_elsewhere.is_dir()
    assert (dest / "web01" / stamp_of(DAYS[2])).is_symlink()


def test_only_stamp_named_folders_are_backups(tmp_path: Path) -> None:
    backup_at(tmp_path, DAYS[0])
    backup_at(tmp_path, DAYS[1])
    other = tmp_path / "web01" / "keep-me"
    other.mkdir()
    retention.prune(tmp_path, None, Policy(keep_last=1), dry_run=False)
    assert other.is_dir()


def test_unknown_guest_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no backups of web99"):
        retention.plan(tmp_path, ["web99"], Policy(keep_last=1))
