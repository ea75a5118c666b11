"""Checkpoints on real LVM: create, change the origin, roll back (thick and
thin), release, overflow, watch.  In-process (one libvirt test-driver
connection keeps the guest's state), except one end-to-end CLI path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from labkit import (
    VG,
    Lab,
    MiB,
    disk_xml,
    domain_xml,
    lv_names,
    node_uri,
    pattern,
    sha256_of,
    write_device,
)
from labkit import vmsnap as run_vmsnap

from vmsnap import checkpoint, cleanup, lvm, virt
from vmsnap.errors import DestinationError, IntegrityError
from vmsnap.hooks import NO_HOOKS
from vmsnap.models import QuiesceMode, SizeSpec


def settings(label: str, **kw: object) -> checkpoint.CreateSettings:
    return checkpoint.CreateSettings(
        label=label,
        quiesce=QuiesceMode.PAUSE,
        hooks=NO_HOOKS,
        **kw,  # type: ignore[arg-type]
    )


def checkpoint_lvs() -> set[str]:
    return lv_names("@vmsnap_checkpoint")


def test_rollback_restores_checkpoint_time_bytes_thick_and_thin(lab: Lab, tmp_path: Path) -> None:
    thick = lab.lv("up-root", 8)
    thin = lab.lv("up-data", 8, thin=True)
    before = {p: sha256_of(p) for p in (thick, thin)}
    uri = node_uri(tmp_path, [domain_xml("up", [disk_xml("vda", thick), disk_xml("vdb", thin)])])
    with virt.connection(uri) as conn:
        made = checkpoint.create(
            conn, "up", settings("pre", snapshot_size=SizeSpec(percent=100), expire=3600)
        )
        assert [d.target for d in made.disks] == ["vda", "vdb"]
        assert [d.snapshot.kind for d in made.disks] == ["thick", "thin"]
        assert made.expires is not None
        assert made.expires > time.time()
        assert not lv_names("@vmsnap"), "still tagged as a backup snapshot"
        assert cleanup.cleanup().snapshots == []  # cleanup never sweeps a checkpoint
        assert len(checkpoint_lvs()) == 2

        # the upgrade: new bytes on both disks
        write_device(thick, pattern("upgraded", 8 * MiB))
        write_device(thin, pattern("upgraded", 8 * MiB))
        (listed,) = checkpoint.checkpoints(made.uuid)
        vda = listed.disks[0]
        assert vda.fill is not None
        assert vda.fill > 50
        assert vda.cow_left
        assert listed.disks[1].pool_fill is not None

        with pytest.raises(DestinationError, match="needs the guest shut off"):
            checkpoint.rollback(conn, "up", "pre", hooks=NO_HOOKS)
        done = checkpoint.rollback(conn, "up", None, shutdown=True, hooks=NO_HOOKS)
        assert done.label == "pre"
        assert conn.domain("up").state() == "shutoff"
    assert {p: sha256_of(p) for p in (thick, thin)} == before
    assert not checkpoint_lvs()
    left = {lv.name: lv for lv in lvm.list_volumes(names=(VG,))}
    assert not any(t.startswith("vmsnap") for t in left["up-root"].tags + left["up-data"].tags)


def test_release_removes_the_snapshots_and_keeps_the_changes(lab: Lab, tmp_path: Path) -> None:
    thick = lab.lv("rel-root", 8)
    uri = node_uri(tmp_path, [domain_xml("rel", [disk_xml("vda", thick)])])
    with virt.connection(uri) as conn:
        checkpoint.create(conn, "rel", settings("ok"))
        write_device(thick, pattern("kept", 8 * MiB))
        after = sha256_of(thick)
        released = checkpoint.release(conn, "rel", "ok", hooks=NO_HOOKS)
    assert len(released.disks) == 1
    assert not checkpoint_lvs()
    assert sha256_of(thick) == after


def test_overflowed_checkpoint_is_invalid_and_rollback_is_refused(lab: Lab, tmp_path: Path) -> None:
    thick = lab.lv("ovf-root", 16)
    uri = node_uri(tmp_path, [domain_xml("ovf", [disk_xml("vda", thick)])])
    with virt.connection(uri) as conn:
        checkpoint.create(conn, "ovf", settings("small", snapshot_size=SizeSpec(size=4 * MiB)))
        write_device(thick, pattern("too-much", 12 * MiB))
        (cp,) = checkpoint.guest_checkpoints(conn, "ovf")
        assert cp.invalid
        assert cp.disks[0].invalid
        assert cp.disks[0].snapshot.attr[4] == "I"
        report = checkpoint.watch()
        assert report.error is not None
        assert "overflowed" in str(report.error)
        with pytest.raises(IntegrityError, match=r"overflowed .* lost"):
            checkpoint.rollback(conn, "ovf", "small", shutdown=True, hooks=NO_HOOKS)
        assert conn.domain("ovf").state() == "running"  # refused before any shutdown
        checkpoint.release(conn, "ovf", None, hooks=NO_HOOKS)
    assert not checkpoint_lvs()


def test_watch_extends_a_filling_snapshot_and_releases_an_expired_one(
    lab: Lab, tmp_path: Path
) -> None:
    busy = lab.lv("wat-root", 16)
    old = lab.lv("wat-old", 8)
    uri = node_uri(
        tmp_path,
        [domain_xml("wat", [disk_xml("vda", busy)]), domain_xml("old", [disk_xml("vda", old)])],
    )
    with virt.connection(uri) as conn:
        checkpoint.create(conn, "wat", settings("grow", snapshot_size=SizeSpec(size=4 * MiB)))
        checkpoint.create(conn, "old", settings("stale", expire=60))
        write_device(busy, pattern("busy", 3 * MiB))
        report = checkpoint.watch(threshold=50, now=time.time() + 120)
        assert report.error is None, report
        assert any(a.startswith("extended wat grow vda") for a in report.actions), report
        assert "released old stale: expired" in report.actions
        (grown,) = checkpoint.guest_checkpoints(conn, "wat")
        assert grown.disks[0].snapshot.size > 4 * MiB
        assert checkpoint.guest_checkpoints(conn, "old") == []
        checkpoint.release(conn, "wat", "grow", hooks=NO_HOOKS)


def test_cli_create_list_rollback(lab: Lab, tmp_path: Path) -> None:
    """End to end through the CLI (each call is a new process, a new test
    driver: the guest starts out running each time)."""
    disk = lab.lv("cli-root", 8)
    before = sha256_of(disk)
    stable = "<name>cli</name><uuid>6d1c0f3e-57b8-4a47-9a41-0f4a3c1e2b77</uuid>"
    xml = domain_xml("cli", [disk_xml("vda", disk)]).replace("<name>cli</name>", stable)
    uri = node_uri(tmp_path, [xml])  # a UUID, or the test driver makes a new one each run
    env = {"VMSNAP_HOOKS_DIR": str(tmp_path / "no-hooks")}
    made = run_vmsnap("checkpoint", "create", "cli", "--label", "pre", "-c", uri, "--expire", "2d",
                      "--quiesce", "pause", "--snapshot-size", "100%", env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "cli  pre  age" in made.stdout
    write_device(disk, pattern("changed", 8 * MiB))
    listed = run_vmsnap("checkpoint", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (doc,) = [c for c in json.loads(listed.stdout) if c["domain"] == "cli"]
    assert doc["label"] == "pre"
    assert not doc["invalid"]
    assert doc["expires"]
    assert doc["disks"][0]["fill_percent"] > 0
    refused = run_vmsnap("checkpoint", "rollback", "cli", "pre", "-c", uri, env=env)
    assert refused.returncode == 9, refused.stderr
    assert "shut off" in refused.stderr
    rolled = run_vmsnap("checkpoint", "rollback", "cli", "-c", uri, "--shutdown", env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert "rolled back to checkpoint pre" in rolled.stdout
    assert sha256_of(disk) == before
    assert not checkpoint_lvs()
