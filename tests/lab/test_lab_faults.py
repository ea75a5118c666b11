"""Bad input and faults on real LVM: each one clear, with its own exit code,
and nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from labkit import (
    VG,
    Lab,
    backups_of,
    disk_xml,
    domain_xml,
    lv_names,
    new_repo,
    node_uri,
    only_backup,
    sh,
    sha256_of,
    stopped,
    stored_objects,
    vmsnap,
)


def one_line_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("vmsnap: error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    return errors[0]


def test_vg_without_room_is_refused_up_front(lab: Lab, tmp_path: Path) -> None:
    free = lab.free()
    big = lab.lv("big", (free - 8 * (1 << 20)) // (1 << 20), seed="x")
    uri = node_uri(tmp_path, [domain_xml("big", [disk_xml("vda", big)])])
    dest = new_repo(tmp_path)
    run = vmsnap("backup", "big", "--dest", str(dest), "--connect", uri, "--snapshot-size", "50%")
    assert run.returncode == 5, run.stderr
    assert "free" in one_line_error(run.stderr)
    assert not lv_names("@vmsnap")
    assert stored_objects(dest) == []


def test_non_lv_disk_refused_unless_excluded(lab: Lab, tmp_path: Path) -> None:
    disk = lab.lv("mixed", 4)
    scratch = tmp_path / "scratch.img"
    scratch.write_bytes(b"\0" * 4096)
    uri = node_uri(
        tmp_path,
        [domain_xml("mixed", [disk_xml("vda", disk), disk_xml("vdb", str(scratch), kind="file")])],
    )
    dest = new_repo(tmp_path)
    run = vmsnap("backup", "mixed", "--dest", str(dest), "--connect", uri)
    assert run.returncode == 4
    assert "--exclude mixed:vdb" in one_line_error(run.stderr)
    assert stored_objects(dest) == []
    run = vmsnap("backup", "mixed", "--dest", str(dest), "--connect", uri, "--exclude", "mixed:vdb")
    assert run.returncode == 0, run.stderr
    folder = only_backup(dest, "mixed")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["skipped"] == [{"target": "vdb", "reason": "excluded"}]


def test_one_failing_guest_does_not_stop_the_others(lab: Lab, tmp_path: Path) -> None:
    good = lab.lv("good", 4)
    uri = node_uri(
        tmp_path,
        [
            domain_xml("good", [disk_xml("vda", good)]),
            domain_xml("bad", [disk_xml("vda", f"/dev/{VG}/missing")]),
        ],
    )
    dest = new_repo(tmp_path)
    run = vmsnap("backup", "--all", "--dest", str(dest), "--connect", uri)
    assert run.returncode == 1, run.stderr  # partial
    assert "good: OK" in run.stdout
    assert "bad: FAILED" in run.stdout
    assert len(backups_of(dest, "good")) == 1


def test_leftover_snapshot_of_a_dead_run_is_removed(lab: Lab, tmp_path: Path) -> None:
    disk = lab.lv("crashy", 4)
    sh("lvcreate", "-q", "-s", "-L", "4m", "-n", "crashy-vmsnap-dead0001",
       "--addtag", "vmsnap", f"{VG}/crashy")  # fmt: skip
    uri = node_uri(tmp_path, [domain_xml("crashy", [disk_xml("vda", disk)])])
    dest = new_repo(tmp_path)
    run = vmsnap("backup", "crashy", "--dest", str(dest), "--connect", uri)
    assert run.returncode == 0, run.stderr
    assert "left by an earlier run" in run.stderr
    assert "crashy-vmsnap-dead0001" not in lv_names()


def test_sigterm_mid_stream_cleans_up(lab: Lab, tmp_path: Path) -> None:
    disk = lab.lv("term", 96, seed="term")
    before = sha256_of(disk)
    uri = node_uri(tmp_path, [domain_xml("term", [disk_xml("vda", disk)])])
    dest = new_repo(tmp_path)
    # stopped at its first streamed chunk (a race with the stream would be lost:
    # 96 MiB take well under a second now)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmsnap", "backup", "term", "--dest", str(dest),
         "--connect", uri, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, VMSNAP_FAILPOINT="streaming"),
    )  # fmt: skip
    stopped(proc)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "SIGTERM" in err
    assert not lv_names("@vmsnap")
    assert backups_of(dest, "term") == []
    assert [o for o in stored_objects(dest) if "/." in o] == []  # no half-written chunk
    assert sha256_of(disk) == before
    assert os.path.exists(disk)


def test_unknown_guest_and_missing_dest(lab: Lab, tmp_path: Path) -> None:
    disk = lab.lv("known", 4)
    uri = node_uri(tmp_path, [domain_xml("known", [disk_xml("vda", disk)])])
    run = vmsnap("backup", "nosuch", "--dest", str(new_repo(tmp_path)), "--connect", uri)
    assert run.returncode == 3
    assert "nosuch" in one_line_error(run.stderr)
    run = vmsnap("backup", "known", "--dest", str(tmp_path / "absent"), "--connect", uri)
    assert run.returncode == 9
    assert "does not exist" in one_line_error(run.stderr)
    run = vmsnap("backup", "known", "--dest", str(tmp_path), "--connect", uri)
    assert run.returncode == 15  # a folder, but no repository
    assert "not a vmsnap repository" in one_line_error(run.stderr)
