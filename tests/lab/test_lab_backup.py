"""Backups on real LVM: thick and thin, several disks, a live writer, quiesce."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from labkit import (
    VG,
    Lab,
    MiB,
    chunk_files,
    chunk_sha256_of,
    disk_xml,
    domain_xml,
    lv_names,
    new_repo,
    node_uri,
    only_backup,
    pattern,
    sh,
    sha256_of,
    stock_sha,
    stored_objects,
    vmsnap,
    write_device,
)

from vmsnap import backup, virt
from vmsnap.errors import Interrupted
from vmsnap.hooks import NO_HOOKS
from vmsnap.models import QuiesceMode, SizeSpec
from vmsnap.progress import NoProgress


def published(dest: Path) -> list[str]:
    """The objects under backups/ (chunks aside): what a failed run must not leave."""
    return [o for o in stored_objects(dest) if o.startswith("backups/")]


def test_backup_all_thick_thin_ext4(lab: Lab, tmp_path: Path) -> None:
    root = lab.lv("web01-root", 24)
    files = tmp_path / "files"
    files.mkdir()
    (files / "hello.txt").write_text("hello from the domU\n" * 100)
    sh("mkfs.ext4", "-q", "-F", "-d", str(files), root)
    data = lab.lv("web01-data", 8)
    thin = lab.lv("db01-disk", 32, thin=True)
    sums = {p: sha256_of(p) for p in (root, data, thin)}
    uri = node_uri(
        tmp_path,
        [
            domain_xml("web01", [disk_xml("xvda", root), disk_xml("xvdb", data)], xen=True),
            domain_xml("db01", [disk_xml("vda", thin)]),
        ],
    )
    dest = new_repo(tmp_path)
    run = vmsnap("backup", "--all", "--dest", str(dest), "--connect", uri, "--json")
    assert run.returncode == 0, run.stderr
    results = {r["name"]: r for r in json.loads(run.stdout)}
    assert all(r["ok"] for r in results.values())

    web = only_backup(dest, "web01")
    manifest = json.loads((web / "manifest.json").read_text())
    assert manifest["format_version"] == 3
    assert manifest["domain"]["name"] == "web01"
    assert manifest["quiesce"]["mode"] == "freeze"  # the test driver answers fs-freeze
    assert manifest["quiesce"]["window_seconds"] >= 0
    disks = {d["target"]: d for d in manifest["disks"]}
    assert disks["xvda"]["chunk_sha256"] == chunk_sha256_of(root)
    assert disks["xvda"]["size"] == 24 * MiB
    assert disks["xvda"]["snapshot"]["kind"] == "thick"
    assert stock_sha(dest, web, "xvda") == sums[root]
    assert stock_sha(dest, web, "xvdb") == sums[data]
    assert (web / "domain.xml").read_text().startswith("<domain")
    chunk = chunk_files(dest, web, "xvda")[0]
    assert oct(chunk.stat().st_mode & 0o777) == "0o600"
    assert oct(web.stat().st_mode & 0o777) == "0o700"
    assert oct(chunk.parent.stat().st_mode & 0o777) == "0o700"

    db = only_backup(dest, "db01")
    dbm = json.loads((db / "manifest.json").read_text())
    assert dbm["disks"][0]["snapshot"]["kind"] == "thin"
    assert stock_sha(dest, db, "vda") == sums[thin]

    # the ext4 image really holds the files
    restored = tmp_path / "root.raw"
    files = [str(p) for p in chunk_files(dest, web, "xvda")]
    cat = subprocess.Popen(["cat", *files], stdout=subprocess.PIPE)
    subprocess.run(["zstd", "-dq", "-o", str(restored)], stdin=cat.stdout, check=True)
    assert cat.wait() == 0
    listing = sh("debugfs", "-R", "cat /hello.txt", str(restored)).stdout
    assert "hello from the domU" in listing


class _WriteOriginOnce(NoProgress):
    """Overwrites the origin as soon as streaming starts: the image must still
    hold the snapshot-time bytes."""

    def __init__(self, origin: str, size: int) -> None:
        self.origin, self.size, self.done = origin, size, False

    def advance(self, nbytes: int) -> None:
        if not self.done:
            self.done = True
            write_device(self.origin, pattern("changed", self.size))


@pytest.mark.parametrize("thin", [False, True], ids=["thick", "thin"])
def test_origin_written_during_copy(lab: Lab, tmp_path: Path, thin: bool) -> None:
    size = 16 * MiB
    origin = lab.lv(f"busy-{'thin' if thin else 'thick'}", 16, thin=thin)
    before = sha256_of(origin)
    uri = node_uri(tmp_path, [domain_xml("busy", [disk_xml("vda", origin)])])
    dest = new_repo(tmp_path)
    # room for every block the writer changes (the overflow guard has its own tests)
    settings = backup.BackupSettings(
        dest=dest, hooks=NO_HOOKS, quiesce=QuiesceMode.PAUSE, snapshot_size=SizeSpec(percent=100)
    )
    with virt.connection(uri) as conn:
        results = backup.backup(conn, ["busy"], settings, _WriteOriginOnce(origin, size))
        assert conn.domain("busy").state() == "running"  # resumed after the window
    assert results[0].ok, results[0].error
    assert results[0].window is not None
    assert results[0].window.used == "pause"
    assert sha256_of(origin) != before  # the writer really wrote
    folder = only_backup(dest, "busy")
    assert stock_sha(dest, folder, "vda") == before


class _InterruptMidStream(NoProgress):
    def advance(self, nbytes: int) -> None:
        raise Interrupted(2)


def test_cow_overflow_fails_cleanly(lab: Lab, tmp_path: Path) -> None:
    """A writer that overflows a small COW snapshot: the disk fails with a clear
    error, nothing is published, the snapshot is removed."""
    origin = lab.lv("overflow", 16)
    uri = node_uri(tmp_path, [domain_xml("ovf", [disk_xml("vda", origin)])])
    dest = new_repo(tmp_path)
    settings = backup.BackupSettings(
        dest=dest, hooks=NO_HOOKS, snapshot_size=SizeSpec(size=4 << 20)
    )
    with virt.connection(uri) as conn:
        results = backup.backup(conn, ["ovf"], settings, _WriteOriginOnce(origin, 16 * MiB))
    assert not results[0].ok
    assert "overflowed" in str(results[0].error)
    assert "--snapshot-size" in str(results[0].error)
    assert published(dest) == []


def test_interrupt_mid_stream_removes_everything(lab: Lab, tmp_path: Path) -> None:
    a = lab.lv("int-a", 8)
    b = lab.lv("int-b", 8, thin=True)
    uri = node_uri(tmp_path, [domain_xml("g", [disk_xml("vda", a), disk_xml("vdb", b)])])
    dest = new_repo(tmp_path)
    settings = backup.BackupSettings(dest=dest, hooks=NO_HOOKS, quiesce=QuiesceMode.PAUSE)
    with virt.connection(uri) as conn:
        with pytest.raises(Interrupted):
            backup.backup(conn, ["g"], settings, _InterruptMidStream())
        assert conn.domain("g").state() == "running"
    assert not lv_names("@vmsnap")
    assert published(dest) == []


def test_paused_guest_stays_paused(lab: Lab, tmp_path: Path) -> None:
    disk = lab.lv("paused-disk", 4)
    uri = node_uri(tmp_path, [domain_xml("p", [disk_xml("vda", disk)], runstate=3)])
    dest = new_repo(tmp_path)
    for mode in (QuiesceMode.AUTO, QuiesceMode.PAUSE, QuiesceMode.FREEZE):
        settings = backup.BackupSettings(dest=dest, hooks=NO_HOOKS, quiesce=mode)
        with virt.connection(uri) as conn:
            results = backup.backup(conn, ["p"], settings, NoProgress())
            assert conn.domain("p").state() == "paused"
        assert results[0].ok, results[0].error
        assert results[0].window is not None
        assert results[0].window.used == "none"


def test_dry_run_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    disk = lab.lv("dry", 8)
    uri = node_uri(tmp_path, [domain_xml("dry", [disk_xml("vda", disk)])])
    dest = new_repo(tmp_path)
    before = lv_names()
    run = vmsnap("backup", "dry", "--dest", str(dest), "--connect", uri, "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "would back up" in run.stdout
    assert f"{VG}/dry" in run.stdout
    assert lv_names() == before
    assert stored_objects(dest) == []


def test_backup_all_leaves_out_guests_without_lvs_and_excluded_ones(
    lab: Lab, tmp_path: Path
) -> None:
    """Defect 11: a qcow2-only or diskless guest no longer fails every --all run,
    and --exclude-guest leaves a whole guest out; the rest is backed up on real LVM."""
    disk = lab.lv("keep-root", 8)
    skipped_disk = lab.lv("skip-root", 8)
    image = tmp_path / "files01.qcow2"
    image.write_bytes(b"QFI\xfb" + bytes(508))
    uri = node_uri(
        tmp_path,
        [
            domain_xml("keep", [disk_xml("vda", disk)]),
            domain_xml("files01", [disk_xml("vda", str(image), kind="file")]),
            domain_xml("empty01", []),
            domain_xml("desktop", [disk_xml("vda", skipped_disk)]),
        ],
    )
    dest = new_repo(tmp_path)
    run = vmsnap("backup", "--all", "--exclude-guest", "desktop", "--dest", str(dest),
                 "--connect", uri, "--quiesce", "pause", "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    doc = {r["name"]: r for r in json.loads(run.stdout)}
    assert {n: r["skipped"] for n, r in doc.items()} == {
        "keep": None,
        "files01": "no LV disk (file, not an LV)",
        "empty01": "no LV disk (no disks)",
        "desktop": "excluded",
    }
    assert doc["keep"]["ok"]
    assert doc["keep"]["directory"]
    assert {o.split("/")[1] for o in published(dest)} == {"keep"}
    assert stock_sha(dest, only_backup(dest, "keep"), "vda") == sha256_of(disk)
    assert not lv_names("@vmsnap")
    named = vmsnap("backup", "files01", "--dest", str(dest), "--connect", uri)
    assert named.returncode == 4  # named on the command line: it still fails
