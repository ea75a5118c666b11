"""The overflow guard and the thin-pool check, on real LVM."""

from __future__ import annotations

import json
from pathlib import Path

from labkit import (
    POOL,
    VG,
    Lab,
    MiB,
    SlowWriter,
    chunk_sha256_of,
    disk_xml,
    domain_xml,
    lv_names,
    new_repo,
    node_uri,
    pattern,
    sh,
    sha256_of,
    vmsnap,
    write_device,
)

from vmsnap import backup, virt
from vmsnap.guard import GuardSettings
from vmsnap.hooks import NO_HOOKS
from vmsnap.models import QuiesceMode, SizeSpec


def test_guard_extends_a_filling_snapshot_in_time(lab: Lab, tmp_path: Path) -> None:
    origin = lab.lv("grow", 32)
    before = sha256_of(origin)
    before_digest = chunk_sha256_of(origin)
    uri = node_uri(tmp_path, [domain_xml("grow", [disk_xml("vda", origin)])])
    dest = new_repo(tmp_path)
    settings = backup.BackupSettings(
        dest=dest,
        hooks=NO_HOOKS,
        quiesce=QuiesceMode.PAUSE,
        snapshot_size=SizeSpec(size=4 * MiB),
        guard=GuardSettings(interval=0.2),
    )
    with virt.connection(uri) as conn:
        results = backup.backup(conn, ["grow"], settings, SlowWriter(origin))
    assert results[0].ok, results[0].error
    assert results[0].backup is not None
    manifest = json.loads((Path(results[0].backup.label) / "manifest.json").read_text())
    disk = manifest["disks"][0]
    assert disk["snapshot"]["peak_fill_percent"] > 0
    assert disk["snapshot"]["extended"] > 0  # the guard grew it
    assert disk["chunk_sha256"] == before_digest  # and the image holds the snapshot-time bytes
    assert sha256_of(origin) != before


def test_thin_pool_near_full_is_refused_before_snapshotting(lab: Lab, tmp_path: Path) -> None:
    sh("lvcreate", "-q", "-T", "-L", "16m", f"{VG}/fullpool")
    sh("lvcreate", "-q", "-V", "32m", "-T", f"{VG}/fullpool", "-n", "crowded")
    disk = f"/dev/{VG}/crowded"
    write_device(disk, pattern("fill", 15 * MiB))  # the pool is now ~94% full
    uri = node_uri(tmp_path, [domain_xml("crowd", [disk_xml("vda", disk)])])
    dest = new_repo(tmp_path)
    before = lv_names()
    run = vmsnap("backup", "crowd", "--dest", str(dest), "--connect", uri)
    assert run.returncode == 5, run.stderr
    assert "fullpool" in run.stderr
    assert lv_names() == before
    run = vmsnap("backup", "crowd", "--dest", str(dest), "--connect", uri,
                 "--thin-pool-limit", "99")  # fmt: skip
    assert run.returncode == 0, run.stderr
    sh("lvremove", "-f", f"{VG}/crowded", f"{VG}/fullpool")
    assert POOL
