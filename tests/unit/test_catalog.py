"""What a repository holds (vmsnap.catalog): each guest's backups, their
sizes (logical, new, unique) and their recorded verify result."""

from __future__ import annotations

from pathlib import Path

import pytest
from backupkit import STAMP, chunk_path, edit_manifest, make_backup, random_bytes

from vmsnap import catalog
from vmsnap.errors import ExitCode, NotARepositoryError, NotFoundError
from vmsnap.repo import refs
from vmsnap.repo.repository import open_local

LATER = "20261128T042319Z"
MiB = 1 << 20


def test_scan_lists_each_guests_backups_oldest_first(tmp_path: Path) -> None:
    make_backup(tmp_path, "web01", LATER)
    make_backup(tmp_path, "web01", STAMP)
    make_backup(tmp_path, "db01", STAMP)
    found = catalog.scan(open_local(tmp_path))
    assert [(g.guest, [b.stamp for b in g.backups]) for g in found] == [
        ("db01", [STAMP]),
        ("web01", [STAMP, LATER]),
    ]
    assert found[1].label == f"{tmp_path}/backups/web01"
    assert all(b.good and b.verified is None for g in found for b in g.backups)


def test_named_guests_only_and_an_unknown_one_is_not_found(tmp_path: Path) -> None:
    make_backup(tmp_path, "web01")
    make_backup(tmp_path, "db01")
    repo = open_local(tmp_path)
    assert [g.guest for g in catalog.scan(repo, ["web01"])] == ["web01"]
    with pytest.raises(NotFoundError, match="no backups of web99") as caught:
        catalog.scan(repo, ["web99"])
    assert caught.value.exit_code == ExitCode.NOT_FOUND


def test_sizes_logical_new_and_unique(tmp_path: Path) -> None:
    shared = random_bytes(4 * MiB, 1)
    first = make_backup(tmp_path, "web01", STAMP, {"vda": shared + random_bytes(1000, 2)})
    second = make_backup(tmp_path, "web01", LATER, {"vda": shared + random_bytes(1000, 3)})
    a, b = catalog.scan(open_local(tmp_path))[0].backups
    assert a.manifest is not None
    assert b.manifest is not None
    assert (a.manifest.total_size, b.manifest.total_size) == (4 * MiB + 1000,) * 2
    assert (a.manifest.new_bytes, b.manifest.new_bytes) == (4 * MiB + 1000, 1000)
    assert a.unique_bytes == chunk_path(tmp_path, first, "vda", 1).stat().st_size
    assert b.unique_bytes == chunk_path(tmp_path, second, "vda", 1).stat().st_size


def test_a_broken_manifest_is_listed_as_not_good_with_its_problem(tmp_path: Path) -> None:
    folder = make_backup(tmp_path)
    edit_manifest(folder, lambda doc: doc.update(host="evil"))  # the seal no longer matches
    [b] = catalog.scan(open_local(tmp_path))[0].backups
    assert (b.manifest, b.good) == (None, False)
    assert "seal" in str(b.problem)


def test_verified_json_is_recorded_and_read_back(tmp_path: Path) -> None:
    folder = make_backup(tmp_path)
    ref = refs.find_exact(open_local(tmp_path), "web01", STAMP)
    assert catalog.read_verified(ref) is None
    catalog.record_verified(ref, "CORRUPT", 0)
    assert (folder / "verified.json").is_file()
    assert catalog.read_verified(ref) == catalog.Verified("1970-01-01T00:00:00Z", "CORRUPT")
    [b] = catalog.scan(open_local(tmp_path))[0].backups
    assert not b.good  # a failed verify takes it out of retention
    (folder / "verified.json").write_text("[1, 2")
    assert catalog.read_verified(ref) is None  # unreadable: as if never verified


def test_a_folder_that_is_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(NotARepositoryError) as caught:
        catalog.open_repository(tmp_path)
    assert caught.value.exit_code == ExitCode.NOT_A_REPOSITORY
