"""verify, restore and clone on the host: bad input is one clear line with its
own exit status, and nothing is touched."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from clikit import Main, one_line_error

from vmsnap.errors import ExitCode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from backupkit import flip_bit, make_backup


def test_verify_ok_then_corrupt(main: Main, tmp_path: Path) -> None:
    folder = make_backup(tmp_path / "dest", "web01")
    code, out, err = main("verify", str(tmp_path / "dest"))
    assert code == 0, err
    assert "1 OK, 0 failed" in out
    image = next(folder.glob("*.img.zst"))
    flip_bit(image, image.stat().st_size // 2)
    code, out, err = main("verify", str(folder))
    assert code == ExitCode.INTEGRITY
    assert "CORRUPT" in out
    assert "vmsnap: error: " in err
    assert "checksum" in err


def test_verify_missing_path(main: Main, tmp_path: Path) -> None:
    code, _out, err = main("verify", str(tmp_path / "nothing"))
    assert code == ExitCode.NOT_FOUND
    one_line_error(err)


def test_restore_needs_exactly_one_target(main: Main, tmp_path: Path) -> None:
    folder = make_backup(tmp_path / "dest", "web01")
    code, _out, err = main("restore", str(folder))
    assert code == ExitCode.USAGE
    assert "--to" in one_line_error(err)
    code, _out, err = main("restore", str(folder), "--to", "/dev/vg/x", "--vg", "vg")
    assert code == ExitCode.USAGE
    one_line_error(err)


def test_restore_of_a_missing_backup(main: Main, tmp_path: Path) -> None:
    code, _out, err = main("restore", str(tmp_path / "none"), "--vg", "vg0")
    assert code == ExitCode.NOT_FOUND
    one_line_error(err)


def test_restore_unknown_disk(main: Main, tmp_path: Path) -> None:
    folder = make_backup(tmp_path / "dest", "web01")
    code, _out, err = main("restore", str(folder), "--disk", "sdz", "--vg", "vg0")
    assert code == ExitCode.NOT_FOUND
    assert "sdz" in one_line_error(err)


def test_restore_of_a_corrupt_manifest(main: Main, tmp_path: Path) -> None:
    folder = make_backup(tmp_path / "dest", "web01")
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text().replace("web01", "web99"))
    code, _out, err = main("restore", str(folder), "--vg", "vg0")
    assert code == ExitCode.INTEGRITY
    assert "seal" in one_line_error(err)


def test_clone_start_without_define(main: Main, uri: str) -> None:
    code, _out, err = main("clone", "web01", "web02", "--no-define", "--start", "--connect", uri)
    assert code == ExitCode.USAGE
    one_line_error(err)


def test_clone_unknown_template(main: Main, uri: str) -> None:
    code, _out, err = main("clone", "nosuch", "web02", "--connect", uri)
    assert code == ExitCode.NOT_FOUND
    assert "nosuch" in one_line_error(err)


def test_clone_onto_an_existing_name(main: Main, uri: str) -> None:
    code, _out, err = main("clone", "web01", "db01", "--connect", uri)
    assert code in (ExitCode.USAGE, ExitCode.UNSUPPORTED_DISK)
    one_line_error(err)


def test_restore_waits_for_the_run_lock(
    main: Main, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore is a job like the others: a prune must not remove the backup
    it reads, nor a backup's cleanup mistake its journal for a dead run's."""
    from vmsnap import lock  # noqa: PLC0415 - only this test shortens the wait

    folder = make_backup(tmp_path / "dest", "web01")
    monkeypatch.setattr(lock, "DEFAULT_WAIT", 0.3)
    with lock.run_lock(wait=0.3):
        code, _out, err = main("restore", str(folder), "--vg", "vg0")
    assert code == ExitCode.LOCKED
    assert "another vmsnap run holds" in one_line_error(err)


def test_verify_never_follows_a_link_inside_the_destination(main: Main, tmp_path: Path) -> None:
    """It used to verify a linked backup folder and write verified.json outside."""
    dest = tmp_path / "dest"
    make_backup(dest, "web01")
    outside = make_backup(tmp_path / "outside", "db01")
    (dest / "db01").symlink_to(outside.parent)
    code, out, err = main("verify", str(dest))
    assert code == ExitCode.OK
    assert "db01" not in out
    assert f"{dest / 'db01'}: ignored, a symbolic link" in err
    assert not (outside / "verified.json").exists()
    assert (dest / "web01" / "20261127T042319Z" / "verified.json").exists()
