"""``vmsnap backup`` on the host: every refusal that needs no real LVM, with
its exit status, its one message, and nothing written under the destination."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from clikit import PYTHON, Main, no_traceback, one_line_error, vmsnap

from vmsnap.errors import ExitCode


def test_neither_domain_nor_all(uri: str, dest: Path) -> None:
    run = vmsnap("backup", "--dest", str(dest), "--connect", uri)
    assert run.returncode == ExitCode.USAGE == 2
    assert "--all" in one_line_error(run.stderr)
    assert list(dest.iterdir()) == []


def test_both_domain_and_all(main: Main, uri: str, dest: Path) -> None:
    code, _out, err = main("backup", "web01", "--all", "--dest", str(dest), "--connect", uri)
    assert code == 2
    assert "not both" in one_line_error(err)


def test_dest_is_required(main: Main, uri: str) -> None:
    code, _out, err = main("backup", "web01", "--connect", uri)
    assert code == 2
    assert "--dest" in one_line_error(err)


def test_missing_destination(uri: str) -> None:
    run = vmsnap("backup", "web01", "--dest", "/nonexistent", "--connect", uri)
    assert run.returncode == ExitCode.DESTINATION == 9
    assert one_line_error(run.stderr) == (
        "vmsnap: error: destination /nonexistent does not exist (create it first)"
    )
    assert run.stdout == b""


def test_destination_is_a_file(main: Main, uri: str, tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    code, _out, err = main("backup", "web01", "--dest", str(file), "--connect", uri)
    assert code == 9
    assert "not a directory" in one_line_error(err)
    assert file.read_text() == "x"


@pytest.mark.parametrize("size", ["bogus", "0", "150%", "5Gi"])
def test_bad_snapshot_size(uri: str, dest: Path, size: str) -> None:
    run = vmsnap("backup", "web01", "--dest", str(dest), "--connect", uri, "--snapshot-size", size)
    assert run.returncode == 2
    assert f"bad size {size!r}" in one_line_error(run.stderr)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("item", ["bad", "web01:", ":xvda"])
def test_bad_exclude(main: Main, uri: str, dest: Path, item: str) -> None:
    code, out, err = main(
        "backup", "web01", "--dest", str(dest), "--connect", uri, "--exclude", item
    )
    assert code == 2
    assert "DOMAIN:TARGET" in one_line_error(err)
    assert out == ""
    assert list(dest.iterdir()) == []


def test_bad_options_are_usage_errors(main: Main, uri: str, dest: Path) -> None:
    for extra in (["--level", "0"], ["--level", "20"], ["--quiesce", "bogus"]):
        code, _out, err = main("backup", "web01", "--dest", str(dest), "--connect", uri, *extra)
        assert code == 2, extra
        assert "Traceback" not in err
    assert list(dest.iterdir()) == []


def test_unknown_guest(main: Main, uri: str, dest: Path) -> None:
    code, _out, err = main("backup", "nosuch", "--dest", str(dest), "--connect", uri)
    assert code == 3
    assert "nosuch" in one_line_error(err)
    assert list(dest.iterdir()) == []


@pytest.mark.usefixtures("host_lvm_empty")
def test_disk_that_is_not_an_lv(uri: str, dest: Path, tmp_path: Path) -> None:
    run = vmsnap("backup", "web01", "--dest", str(dest), "--connect", uri)
    assert run.returncode == ExitCode.UNSUPPORTED_DISK == 4
    out = run.stdout.decode()
    assert out.startswith("web01: FAILED")
    assert "xvda" in out
    assert "--exclude web01:xvda" in out
    err = no_traceback(run.stderr)
    assert "--exclude web01:xvda" in err
    assert list(dest.iterdir()) == []  # nothing at all, not even the guest's folder
    assert (tmp_path / "vmsnap.lock").exists()  # the private lock, not /run/lock


@pytest.mark.usefixtures("host_lvm_empty")
def test_disk_that_is_not_an_lv_names_the_guest_once(uri: str, dest: Path) -> None:
    run = vmsnap("backup", "web01", "--dest", str(dest), "--connect", uri)
    assert run.returncode == 4
    assert "web01: web01:" not in run.stderr.decode()


@pytest.mark.usefixtures("host_lvm_empty")
def test_disk_that_is_not_an_lv_says_one_error_line(uri: str, dest: Path) -> None:
    run = vmsnap("backup", "web01", "--dest", str(dest), "--connect", uri)
    assert run.returncode == 4
    assert "--exclude web01:xvda" in one_line_error(run.stderr)


@pytest.mark.usefixtures("host_lvm_empty")
def test_dry_run_json_of_all_guests(main: Main, uri: str, dest: Path) -> None:
    code, out, _err = main(
        "backup", "--all", "--dry-run", "--json", "--dest", str(dest), "--connect", uri
    )
    assert code == 4  # every guest failed: the first one's code
    doc = json.loads(out)
    assert [r["name"] for r in doc] == ["db01", "web01"]
    for result in doc:
        assert (result["ok"], result["exit_code"], result["directory"]) == (False, 4, None)
        assert "--exclude" in result["error"]
    assert "--exclude db01:vda" in doc[0]["error"]
    assert list(dest.iterdir()) == []


@pytest.mark.usefixtures("host_lvm_empty")
def test_excluding_every_disk_leaves_nothing_to_back_up(main: Main, uri: str, dest: Path) -> None:
    code, out, _err = main(
        "backup", "web01", "--dest", str(dest), "--connect", uri, "--exclude", "web01:xvda"
    )
    assert code == 4
    assert "no LV disks to back up" in out
    assert list(dest.iterdir()) == []


# ---------------------------------------------------------------- no LVM tools


def without_lvm(*args: str) -> tuple[int, str, str]:
    env = dict(os.environ, PATH="/nonexistent")
    run = vmsnap(*args, env=env, argv0=(PYTHON, "-m", "vmsnap"))
    return run.returncode, run.stdout.decode(), run.stderr.decode()


@pytest.mark.parametrize("extra", [[], ["--dry-run"], ["--all"]])
def test_backup_without_lvm_tools(uri: str, dest: Path, extra: list[str]) -> None:
    names = [] if "--all" in extra else ["web01"]
    code, out, err = without_lvm("backup", *names, *extra, "--dest", str(dest), "--connect", uri)
    assert code == ExitCode.LVM == 6
    assert out == ""
    assert one_line_error(err) == (
        "vmsnap: error: lvs: command not found (install the lvm2 package)"
    )
    assert list(dest.iterdir()) == []
