"""Crash safety against a real libvirtd: guest state outlives vmsnap, so these
tests can kill vmsnap at its worst moments and check what the next run does.

Each case: exit status, one error line, no leftover LV, the guest's state
(`virsh domstate`), and nothing unpublished left where a listing would see it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from labkit import (
    VMSNAP,
    Lab,
    RealGuest,
    backups_of,
    lv_names,
    new_repo,
    stopped,
    stored_objects,
    virsh,
    vmsnap,
)


def start_backup(
    uri: str, guest: str, dest: Path, point: str, *extra: str
) -> subprocess.Popen[str]:
    env = dict(os.environ, VMSNAP_FAILPOINT=point)
    return subprocess.Popen(
        [*VMSNAP, "backup", guest, "--dest", str(dest), "--connect", uri, "--no-progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def published(dest: Path, guest: str) -> list[Path]:
    return backups_of(dest, guest)


def temporaries(dest: Path) -> list[str]:
    """Half-written objects of a killed writer: dotted temporary files."""
    return [o for o in stored_objects(dest) if o.rsplit("/", 1)[-1].startswith(".")]


@pytest.mark.parametrize(
    ("point", "quiesce", "state_while_stopped"),
    [
        ("window", "pause", "paused"),
        ("snapshotted", "pause", "running"),
        ("streaming", "auto", "running"),
        ("publishing", "auto", "running"),
    ],
)
def test_kill_9_then_cleanup(
    lab: Lab, libvirtd: str, real_guest: RealGuest, tmp_path: Path,
    point: str, quiesce: str, state_while_stopped: str,
) -> None:  # fmt: skip
    disk = lab.lv(f"k9-{point}", 24)
    guest = real_guest(f"k9{point}", {"vda": disk})
    dest = new_repo(tmp_path)
    proc = start_backup(libvirtd, guest, dest, point, "--quiesce", quiesce)
    stopped(proc)
    assert virsh(libvirtd, "domstate", guest) == state_while_stopped
    assert lv_names("@vmsnap")  # the snapshot exists
    proc.kill()
    proc.communicate()

    assert published(dest, guest) == []  # nothing a listing would take for good
    run = vmsnap("cleanup", "--connect", libvirtd)
    assert run.returncode == 0, run.stderr
    assert virsh(libvirtd, "domstate", guest) == "running"
    assert not lv_names("@vmsnap")
    if point == "window":
        assert f"resume guest {guest}" in run.stdout
    run = vmsnap("verify", "--dest", str(dest), check=False)
    assert run.returncode == 3, run.stderr  # no backup there at all

    again = vmsnap("backup", guest, "--dest", str(dest), "--connect", libvirtd)
    assert again.returncode == 0, again.stderr
    assert len(published(dest, guest)) == 1


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_stream(
    lab: Lab, libvirtd: str, real_guest: RealGuest, tmp_path: Path, signum: int, status: int
) -> None:
    disk = lab.lv(f"sig-{signum}", 24)
    guest = real_guest(f"sig{signum}", {"vda": disk})
    dest = new_repo(tmp_path)
    proc = start_backup(libvirtd, guest, dest, "streaming", "--quiesce", "pause")
    stopped(proc)
    proc.send_signal(signum)
    proc.send_signal(signal.SIGCONT)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == status, err
    errors = [line for line in err.splitlines() if line.startswith("vmsnap: error:")]
    assert len(errors) == 1, err
    assert "interrupted" in errors[0]
    assert virsh(libvirtd, "domstate", guest) == "running"
    assert not lv_names("@vmsnap")
    assert published(dest, guest) == []
    assert temporaries(dest) == []  # an orderly stop removes its half-written chunk


def test_guest_paused_before_stays_paused_even_after_a_crash(
    lab: Lab, libvirtd: str, real_guest: RealGuest, tmp_path: Path
) -> None:
    disk = lab.lv("prepaused", 16)
    guest = real_guest("prepaused", {"vda": disk})
    virsh(libvirtd, "suspend", guest)
    dest = new_repo(tmp_path)
    run = vmsnap("backup", guest, "--dest", str(dest), "--connect", libvirtd, "--quiesce", "pause")
    assert run.returncode == 0, run.stderr
    assert virsh(libvirtd, "domstate", guest) == "paused"

    proc = start_backup(libvirtd, guest, dest, "window", "--quiesce", "pause")
    stopped(proc)
    proc.kill()
    proc.communicate()
    run = vmsnap("cleanup", "--connect", libvirtd)
    assert run.returncode == 0, run.stderr
    assert virsh(libvirtd, "domstate", guest) == "paused"  # not ours to resume
    assert not lv_names("@vmsnap")
    virsh(libvirtd, "resume", guest)


def test_pause_mode_on_a_real_hypervisor(
    lab: Lab, libvirtd: str, real_guest: RealGuest, tmp_path: Path
) -> None:
    """The whole path against qemu: snapshot of an LV held open by a running guest."""
    disk = lab.lv("realrun", 16)
    guest = real_guest("realrun", {"vda": disk})
    dest = new_repo(tmp_path)
    run = vmsnap("backup", guest, "--dest", str(dest), "--connect", libvirtd, "--json")
    assert run.returncode == 0, run.stderr
    assert '"mode": "pause"' in run.stdout  # no guest agent: auto fell back to pause
    assert virsh(libvirtd, "domstate", guest) == "running"
    assert sys.executable
