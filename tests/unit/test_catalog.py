"""catalog.py: finding backup folders under a backup, a guest's folder or a
whole destination, and the one symbolic-link policy of every command that
reads a destination (links inside it are never followed, and said so)."""

from __future__ import annotations

from pathlib import Path

import pytest
from backupkit import STAMP, make_backup

from vmsnap import catalog, store
from vmsnap.errors import ExitCode, NotFoundError


def partial(guest_folder: Path, stamp: str = "20261128T000000Z") -> Path:
    folder = guest_folder / f"{stamp}{store.PARTIAL_SUFFIX}"
    folder.mkdir(parents=True)
    (folder / "vda.img.zst").write_bytes(b"half")
    return folder


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """Two guests, three backups, one interrupted run, and clutter."""
    dest = tmp_path / "dest"
    make_backup(dest, "web01", "20261127T042319Z", {"vda": b"a"})
    make_backup(dest, "web01", "20261126T042319Z", {"vda": b"b"})
    make_backup(dest, "db01", "20261127T042319Z-2", {"vda": b"c"})
    partial(dest / "db01")
    (dest / "lost+found").mkdir()
    (dest / "notes.txt").write_text("not a backup")
    (dest / "web01" / "README").write_text("not a backup")
    return dest


def test_find_backups_in_a_backup_folder(dest: Path) -> None:
    folder = dest / "web01" / STAMP
    assert catalog.find_backups(folder) == [folder]
    assert catalog.find_partials(folder) == []


def test_find_backups_in_a_guest_folder(dest: Path) -> None:
    guest = dest / "web01"
    assert catalog.find_backups(guest) == [guest / "20261126T042319Z", guest / STAMP]
    assert catalog.find_partials(guest) == []
    db = dest / "db01"
    assert catalog.find_backups(db) == [db / "20261127T042319Z-2"]
    assert catalog.find_partials(db) == [db / "20261128T000000Z.partial"]


def test_find_backups_in_a_destination(dest: Path) -> None:
    assert catalog.find_backups(dest) == [
        dest / "db01" / "20261127T042319Z-2",
        dest / "web01" / "20261126T042319Z",
        dest / "web01" / STAMP,
    ]
    assert catalog.find_partials(dest) == [dest / "db01" / "20261128T000000Z.partial"]


def test_a_partial_folder_is_never_a_backup(dest: Path) -> None:
    folder = dest / "db01" / "20261128T000000Z.partial"
    (folder / store.MANIFEST).write_text("{}")  # even with a manifest
    assert catalog.find_backups(folder) == []
    assert catalog.find_partials(folder) == [folder]
    assert folder not in catalog.find_backups(dest)


def test_a_backup_whose_manifest_was_lost_is_still_found(dest: Path) -> None:
    folder = dest / "web01" / STAMP
    (folder / store.MANIFEST).unlink()
    assert folder in catalog.find_backups(dest)
    assert catalog.find_backups(folder) == [folder]


def test_an_empty_folder_holds_no_backups(tmp_path: Path) -> None:
    assert catalog.find_backups(tmp_path) == []
    assert catalog.find_partials(tmp_path) == []


@pytest.mark.parametrize("name", ["nowhere", "notes.txt"])
def test_find_backups_of_a_path_that_is_not_a_folder(dest: Path, name: str) -> None:
    with pytest.raises(NotFoundError) as info:
        catalog.find_backups(dest / name)
    assert info.value.exit_code == ExitCode.NOT_FOUND
    with pytest.raises(NotFoundError):
        catalog.find_partials(dest / name)


@pytest.fixture
def linked(dest: Path, tmp_path: Path) -> Path:
    """``dest`` plus a guest folder and a backup folder that are links to
    backups outside it."""
    outside = tmp_path / "outside"
    make_backup(outside, "app01", STAMP, {"vda": b"d"})
    make_backup(outside, "web01", "20261129T000000Z", {"vda": b"e"})
    (dest / "app01").symlink_to(outside / "app01")
    (dest / "web01" / "20261129T000000Z").symlink_to(outside / "web01" / "20261129T000000Z")
    return outside


def test_links_inside_a_destination_are_never_followed_and_said_so(
    dest: Path, linked: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="vmsnap"):
        found = catalog.find_backups(dest)
        scanned = catalog.scan(dest)
    assert not any(linked in f.parents for f in found)
    assert [g.guest for g in scanned] == ["db01", "lost+found", "web01"]
    assert [b.directory.name for b in scanned[2].backups] == ["20261126T042319Z", STAMP]
    for link in (dest / "app01", dest / "web01" / "20261129T000000Z"):
        assert f"{link}: ignored, a symbolic link ({catalog.LINK_POLICY})" in caplog.text


def test_a_guest_named_whose_folder_is_a_link_is_refused(dest: Path, linked: Path) -> None:
    with pytest.raises(NotFoundError, match="app01 is a symbolic link, not followed"):
        catalog.scan(dest, ["app01"])


def test_a_path_named_on_the_command_line_is_taken_as_given(
    dest: Path, linked: Path, tmp_path: Path
) -> None:
    (tmp_path / "latest").symlink_to(linked / "web01" / "20261129T000000Z")
    assert catalog.find_backups(tmp_path / "latest") == [tmp_path / "latest"]
