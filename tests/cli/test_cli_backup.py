"""``vmsnap backup`` on the host: every refusal that needs no real LVM, with
its exit status, its one message, and nothing written under the destination."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from clikit import NODE_XML, PYTHON, Main, no_traceback, one_line_error, stored_objects, vmsnap

from vmsnap.errors import ExitCode


def test_neither_domain_nor_all(uri: str, dest: Path) -> None:
    run = vmsnap("backup", "--dest", str(dest), "--connect", uri)
    assert run.returncode == ExitCode.USAGE == 2
    assert "--all" in one_line_error(run.stderr)
    assert stored_objects(dest) == []


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
        "vmsnap: error: repository /nonexistent does not exist "
        "(create one with: vmsnap init --dest /nonexistent)"
    )
    assert run.stdout == b""


def test_destination_is_a_file(main: Main, uri: str, tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    code, _out, err = main("backup", "web01", "--dest", str(file), "--connect", uri)
    assert code == ExitCode.NOT_A_REPOSITORY == 15
    assert "not a vmsnap repository: not a folder" in one_line_error(err)
    assert file.read_text() == "x"


@pytest.mark.parametrize("size", ["bogus", "0", "150%", "5Gi"])
def test_bad_snapshot_size(uri: str, dest: Path, size: str) -> None:
    run = vmsnap("backup", "web01", "--dest", str(dest), "--connect", uri, "--snapshot-size", size)
    assert run.returncode == 2
    assert f"bad size {size!r}" in one_line_error(run.stderr)
    assert stored_objects(dest) == []


@pytest.mark.parametrize("item", ["bad", "web01:", ":xvda"])
def test_bad_exclude(main: Main, uri: str, dest: Path, item: str) -> None:
    code, out, err = main(
        "backup", "web01", "--dest", str(dest), "--connect", uri, "--exclude", item
    )
    assert code == 2
    assert "DOMAIN:TARGET" in one_line_error(err)
    assert out == ""
    assert stored_objects(dest) == []


def test_bad_options_are_usage_errors(main: Main, uri: str, dest: Path) -> None:
    for extra in (["--level", "0"], ["--level", "20"], ["--quiesce", "bogus"]):
        code, _out, err = main("backup", "web01", "--dest", str(dest), "--connect", uri, *extra)
        assert code == 2, extra
        assert "Traceback" not in err
    assert stored_objects(dest) == []


def test_unknown_guest(main: Main, uri: str, dest: Path) -> None:
    code, _out, err = main("backup", "nosuch", "--dest", str(dest), "--connect", uri)
    assert code == 3
    assert "nosuch" in one_line_error(err)
    assert stored_objects(dest) == []


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
    assert stored_objects(dest) == []  # nothing at all, not even the guest's folder
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
    assert stored_objects(dest) == []


@pytest.mark.usefixtures("host_lvm_empty")
def test_excluding_every_disk_leaves_nothing_to_back_up(main: Main, uri: str, dest: Path) -> None:
    code, out, _err = main(
        "backup", "web01", "--dest", str(dest), "--connect", uri, "--exclude", "web01:xvda"
    )
    assert code == 4
    assert "no LV disks to back up" in out
    assert stored_objects(dest) == []


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
    assert stored_objects(dest) == []


# ---------------------------------------------------------------- leaving guests out of --all

NOT_LV_GUESTS = """\
  <domain type='kvm'><name>files01</name><memory>524288</memory><os><type>hvm</type></os>
    <devices><disk type='file' device='disk'><source file='/var/lib/libvirt/images/f.qcow2'/>\
<target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc'/>\
<readonly/></disk></devices></domain>
  <domain type='kvm'><name>empty01</name><memory>524288</memory><os><type>hvm</type></os>
    <devices></devices></domain>
"""


@pytest.fixture
def mixed_uri(tmp_path: Path) -> str:
    """The usual guests (their block disks are no LVs on this host) and two that
    have no LV disk at all: qcow2 only, and no disk."""
    node = tmp_path / "mixed.xml"
    node.write_text(NODE_XML.replace("<node>\n", "<node>\n" + NOT_LV_GUESTS))
    return f"test://{node}"


def backup_all(main: Main, uri: str, dest: Path, *extra: str) -> tuple[int, list[Any], str]:
    code, out, err = main("backup", "--all", "--dry-run", "--json", "--dest", str(dest),
                          "-c", uri, *extra)  # fmt: skip
    return code, json.loads(out) if out else [], err


@pytest.mark.usefixtures("host_lvm_empty")
def test_all_leaves_out_a_guest_without_any_lv_disk(main: Main, mixed_uri: str, dest: Path) -> None:
    """One qcow2-only or diskless guest no longer fails every --all run."""
    code, doc, _err = backup_all(
        main, mixed_uri, dest, "--exclude-guest", "web01", "--exclude-guest", "db01"
    )
    assert code == ExitCode.OK
    skipped = {r["name"]: r["skipped"] for r in doc}
    assert skipped == {
        "db01": "excluded",
        "empty01": "no LV disk (no disks)",
        "files01": "no LV disk (file, not an LV)",
        "web01": "excluded",
    }
    assert all(r["ok"] and r["error"] is None and r["plan"] is None for r in doc)
    code, out, _err = main("backup", "--all", "--dry-run", "--dest", str(dest), "-c", mixed_uri)
    assert code == ExitCode.UNSUPPORTED_DISK  # web01 and db01: a block device that is no LV fails
    assert "files01: left out: no LV disk (file, not an LV)" in out
    assert "web01: FAILED" in out
    assert stored_objects(dest) == []


@pytest.mark.usefixtures("host_lvm_empty")
def test_a_guest_named_without_any_lv_disk_still_fails(
    main: Main, mixed_uri: str, dest: Path
) -> None:
    code, out, _err = main("backup", "files01", "--dry-run", "--dest", str(dest), "-c", mixed_uri)
    assert code == ExitCode.UNSUPPORTED_DISK
    assert out.startswith("files01: FAILED")


def test_exclude_guest_of_an_unknown_guest_is_a_usage_error(
    main: Main, uri: str, dest: Path
) -> None:
    code, doc, err = backup_all(main, uri, dest, "--exclude-guest", "webo1")
    assert code == ExitCode.USAGE
    assert doc["message_type"] == "exit_error"
    assert doc["exit_code"] == ExitCode.USAGE
    assert "--exclude-guest names no guest libvirt knows: webo1" in one_line_error(err)


def test_exclude_guest_goes_with_all(main: Main, uri: str, dest: Path) -> None:
    code, _out, err = main(
        "backup", "web01", "--exclude-guest", "db01", "--dest", str(dest), "-c", uri
    )
    assert code == ExitCode.USAGE
    assert "--exclude-guest goes with --all" in one_line_error(err)


@pytest.mark.usefixtures("host_lvm_empty")
def test_the_configuration_file_skips_a_guest_under_all(
    main: Main, mixed_uri: str, dest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "vmsnap.toml"
    conf.write_text("[guests.web01]\nskip = true\n[guests.db01]\nskip = true\n")
    monkeypatch.setenv("VMSNAP_CONFIG", str(conf))
    code, doc, _err = backup_all(main, mixed_uri, dest)
    assert code == ExitCode.OK
    assert {r["name"]: r["skipped"] for r in doc}["web01"] == "excluded"
    code, _out, _err = main("backup", "web01", "--dry-run", "--dest", str(dest), "-c", mixed_uri)
    assert code == ExitCode.UNSUPPORTED_DISK  # named: backed up (and here it fails)
    conf.write_text("[guests.webo1]\nskip = true\n")
    code, doc, err = backup_all(main, mixed_uri, dest)
    assert code == ExitCode.USAGE
    assert "webo1" in one_line_error(err)
    conf.write_text('[guests.web01]\nskip = "yes"\n')
    code, doc, err = backup_all(main, mixed_uri, dest)
    assert code == ExitCode.USAGE
    assert "guests.web01.skip: must be true or false" in one_line_error(err)
