"""Faults from outside vmsnap: a full destination, a busy snapshot, hostile
names, and read errors from a device-mapper `error` target under the origin."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from labkit import (
    VG,
    VMSNAP,
    Lab,
    MiB,
    backups_of,
    disk_xml,
    domain_xml,
    lv_names,
    new_repo,
    node_uri,
    sh,
    stored_objects,
    vmsnap,
)


def one_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("vmsnap: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_destination_full(lab: Lab, tmp_path: Path) -> None:
    """A full disk during a chunk write: exit 9, one line, and nothing lost:
    the backup made before still verifies, no half-written chunk is left."""
    small = lab.lv("small", 4)
    sh("sh", "-c", f"head -c {3 * MiB} /dev/urandom > {small}")
    disk = lab.lv("bulky", 48)
    sh("sh", "-c", f"head -c {40 * MiB} /dev/urandom > {disk}")  # incompressible
    backing = tmp_path / "small.img"
    sh("truncate", "-s", "12M", str(backing))
    sh("mkfs.ext4", "-q", "-F", str(backing))
    mount = tmp_path / "small"
    mount.mkdir()
    sh("mount", "-o", "loop", str(backing), str(mount))
    try:
        uri = node_uri(
            tmp_path,
            [
                domain_xml("small", [disk_xml("vda", small)]),
                domain_xml("bulky", [disk_xml("vda", disk)]),
            ],
        )
        assert vmsnap("init", "--dest", str(mount)).returncode == 0
        run = vmsnap("backup", "small", "--dest", str(mount), "--connect", uri)
        assert run.returncode == 0, run.stderr
        run = vmsnap("backup", "bulky", "--dest", str(mount), "--connect", uri)
        assert run.returncode == 9, run.stderr
        assert "destination full" in one_line(run.stderr)
        assert not lv_names("@vmsnap")
        assert backups_of(mount, "bulky") == []
        assert [o for o in stored_objects(mount) if "/." in o] == []  # no temporary left
        run = vmsnap("verify", "--dest", str(mount), "--read-data")
        assert run.returncode == 0, run.stderr + run.stdout  # small's backup lost nothing
    finally:
        sh("umount", str(mount))


def test_busy_snapshot_removal_is_retried(lab: Lab, tmp_path: Path) -> None:
    disk = lab.lv("busy-rm", 8)
    uri = node_uri(tmp_path, [domain_xml("busyrm", [disk_xml("vda", disk)])])
    dest = new_repo(tmp_path)
    env = dict(os.environ, VMSNAP_FAILPOINT="publishing")
    proc = subprocess.Popen(
        [*VMSNAP, "backup", "busyrm", "--dest", str(dest), "--connect", uri, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    for _ in range(1500):
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "T":
                break
        time.sleep(0.2)
    (snap,) = lv_names("@vmsnap")
    holder = open(f"/dev/{VG}/{snap}", "rb")  # noqa: SIM115 - closed by the timer
    threading.Timer(8.0, holder.close).start()  # lvremove retries for ~16 s
    proc.send_signal(signal.SIGCONT)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "busy, retrying lvremove" in err
    assert not lv_names("@vmsnap")


HOSTILE = ["web 01", 'it\'s "quoted"', "..", ".hidden", "-rf", "a%2Fb"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_guest_names(lab: Lab, tmp_path: Path, name: str) -> None:
    disk = lab.lv(f"hostile{HOSTILE.index(name)}", 4)
    uri = node_uri(tmp_path, [domain_xml(escape(name, {'"': "&quot;", "'": "&apos;"}),
                                         [disk_xml("vda", disk)])])  # fmt: skip
    dest = new_repo(tmp_path)
    run = vmsnap("backup", "--all", "--dest", str(dest), "--connect", uri)
    assert run.returncode == 0, run.stderr
    (folder,) = (dest / "backups").iterdir()  # exactly one guest folder, inside dest
    assert "/" not in folder.name
    assert not folder.name.startswith((".", "-"))
    (backup,) = folder.iterdir()
    assert (backup / "manifest.json").exists()
    assert backups_of(dest, name) == [backup]  # and read back under its own name
    assert not lv_names("@vmsnap")
    assert not (tmp_path / "escape").exists()


def longest_lv_name() -> str:
    """The longest LV name this LVM accepts in the lab VG (found by trying)."""
    for length in range(127, 60, -1):
        name = "l" * length
        if sh("lvcreate", "-q", "-y", "-L", "4m", "-n", name, VG, check=False).returncode == 0:
            return name
    raise AssertionError("no long LV name accepted")


def test_lv_names_at_the_length_limit(lab: Lab, tmp_path: Path) -> None:
    """The longest name that still leaves room for device-mapper's -real layer
    is backed up (with a shortened, valid snapshot name); the longest name LVM
    accepts at all cannot get a COW snapshot, and is refused up front."""
    longest = longest_lv_name()
    fits = "f" * (127 - len(VG) - 1 - len("-real"))
    lab.lv(fits, 4)
    dest = new_repo(tmp_path)
    uri = node_uri(
        tmp_path,
        [
            domain_xml("fits", [disk_xml("vda", f"/dev/{VG}/{fits}")]),
            domain_xml("long", [disk_xml("vda", f"/dev/{VG}/{longest}")]),
        ],
    )
    run = vmsnap("backup", "fits", "--dest", str(dest), "--connect", uri)
    assert run.returncode == 0, run.stderr
    if len(longest) > len(fits):
        before = lv_names()
        run = vmsnap("backup", "long", "--dest", str(dest), "--connect", uri)
        assert run.returncode == 4, run.stderr
        assert "too long" in run.stderr
        assert lv_names() == before
    assert not lv_names("@vmsnap")


def test_read_errors_under_the_origin(lab: Lab, tmp_path: Path) -> None:
    """A PV on a device-mapper table with an `error` hole: the origin LV spans
    the hole, so reading its snapshot fails with EIO part-way."""
    backing = tmp_path / "flaky.img"
    sh("truncate", "-s", "64M", str(backing))
    loop = sh("losetup", "-f", "--show", str(backing)).stdout.strip()
    # the table starts 1 MiB into the loop device, so LVM does not also find
    # the PV label on the loop device itself (a duplicate PV it would refuse)
    skip = MiB // 512
    sectors = 64 * MiB // 512 - skip
    hole_start, hole_len = 16 * MiB // 512, 4 * MiB // 512
    table = (
        f"0 {hole_start} linear {loop} {skip}\n"
        f"{hole_start} {hole_len} error\n"
        f"{hole_start + hole_len} {sectors - hole_start - hole_len} linear {loop} "
        f"{skip + hole_start + hole_len}\n"
    )
    subprocess.run(["dmsetup", "create", "vmsnapflaky"], input=table, text=True, check=True)
    try:
        sh("pvcreate", "-q", "/dev/mapper/vmsnapflaky")
        sh("vgcreate", "-q", "flakyvg", "/dev/mapper/vmsnapflaky")
        sh("lvcreate", "-q", "-y", "-Zn", "-Wn", "-L", "24m", "-n", "bad", "flakyvg")
        uri = node_uri(tmp_path, [domain_xml("flaky", [disk_xml("vda", "/dev/flakyvg/bad")])])
        dest = new_repo(tmp_path)
        run = vmsnap("backup", "flaky", "--dest", str(dest), "--connect", uri)
        assert run.returncode == 10, run.stderr
        assert "read error" in run.stderr
        assert not lv_names("@vmsnap")
        assert backups_of(dest, "flaky") == []
    finally:
        sh("vgremove", "-f", "flakyvg", check=False)
        sh("pvremove", "-f", "/dev/mapper/vmsnapflaky", check=False)
        sh("dmsetup", "remove", "vmsnapflaky", check=False)
        sh("losetup", "-d", loop, check=False)
