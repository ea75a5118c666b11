"""Fully-populated result objects for the golden-file tests: every field the
JSON documents render has a value that is not its default."""

from __future__ import annotations

from pathlib import Path

from vmsnap.backup import GuestResult
from vmsnap.checkpoint import Checkpoint, CheckpointDisk
from vmsnap.cleanup import CleanupReport
from vmsnap.clone import CloneResult
from vmsnap.errors import NoSpaceError
from vmsnap.journal import GuestEntry
from vmsnap.lvwrite import RestoredDisk
from vmsnap.models import Disk, DiskSpec, Guest, LogicalVolume, QuiesceMode
from vmsnap.quiesce import Window
from vmsnap.repo.backend import LocalBackend
from vmsnap.repo.layout import Naming
from vmsnap.repo.manifest import RepoDisk
from vmsnap.repo.refs import BackupRef
from vmsnap.repo.repository import RepoConfig, Repository
from vmsnap.repo.writer import Counts
from vmsnap.restore import RestoreResult
from vmsnap.snapshots import DiskPlan, GuestPlan

MiB = 1 << 20


def _lv(vg: str, name: str, size: int, attr: str, **extra: object) -> str:
    fields = {
        "lv_name": name, "vg_name": vg, "lv_path": f"/dev/{vg}/{name}",
        "lv_dm_path": f"/dev/mapper/{vg}-{name.replace('-', '--')}", "lv_size": str(size),
        "lv_attr": attr, "segtype": "linear", "origin": "", "pool_lv": "", "data_percent": "",
        "snap_percent": "", "metadata_percent": "", "lv_tags": "", "lv_snapshot_invalid": "",
    }  # fmt: skip
    fields.update({k: str(v) for k, v in extra.items()})
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in fields.items()) + "}"


LVS_REPORT = (
    '{"report":[{"lv":['
    + _lv("vg0", "web01-root", 64 * MiB, "-wi-ao----")
    + ","
    + _lv("vg0", "pool", 512 * MiB, "twi-aotz--", segtype="thin-pool", data_percent="12.50")
    + ","
    + _lv("vg0", "db-01", 32 * MiB, "Vwi-aotz--", segtype="thin", pool_lv="pool")
    + "]}]}"
)

ROOT = LogicalVolume(
    vg="vg0", name="web01-root", path="/dev/vg0/web01-root", dm_path="/dev/mapper/vg0-web01--root",
    size=64 * MiB, attr="-wi-ao----", segtype="linear",
)  # fmt: skip
SNAP = LogicalVolume(
    vg="vg0", name="web01-root-ckpt-1", path="/dev/vg0/web01-root-ckpt-1",
    dm_path="/dev/mapper/vg0-web01--root--ckpt--1", size=16 * MiB, attr="swi-a-s---",
    segtype="linear", origin="web01-root", snap_percent=25.0, tags=("vmsnap-ckpt",),
)  # fmt: skip
POOL = LogicalVolume(
    vg="vg0", name="pool", path="", dm_path="/dev/mapper/vg0-pool", size=512 * MiB,
    attr="twi-aotz--", segtype="thin-pool", data_percent=12.5, metadata_percent=3.0,
)  # fmt: skip
THIN = LogicalVolume(
    vg="vg0", name="data", path="/dev/vg0/data", dm_path="/dev/mapper/vg0-data",
    size=32 * MiB, attr="Vwi-aotz--", segtype="thin", pool="pool",
)  # fmt: skip
THIN_SNAP = LogicalVolume(
    vg="vg0", name="data-ckpt-1", path="/dev/vg0/data-ckpt-1",
    dm_path="/dev/mapper/vg0-data--ckpt--1", size=32 * MiB, attr="Vwi-a-tz-k",
    segtype="thin", origin="data", pool="pool", tags=("vmsnap-ckpt",),
)  # fmt: skip

GUEST = Guest(
    name="web01", uuid="11111111-2222-3333-4444-555555555555", state="running",
    hypervisor="kvm",
    disks=(
        Disk(DiskSpec("vda", "disk", "block", "/dev/vg0/web01-root"), ROOT, 64 * MiB, None),
        Disk(DiskSpec("hdc", "cdrom", "file", "/iso/x.iso", readonly=True), None, None, "cdrom"),
    ),
)  # fmt: skip


REPO_CONFIG = RepoConfig(
    id="0123456789abcdef0123456789abcdef", version=3, chunk_size=4 * MiB, digest="sha256",
    compression="zstd", created="2026-11-01T00:00:00Z",
)  # fmt: skip


def GUEST_RESULTS(dest: Path) -> list[GuestResult]:  # noqa: N802 - a constant that needs dest
    plan = GuestPlan(
        guest=GUEST,
        disks=(DiskPlan("vda", ROOT, "web01-root-vmsnap-20261104", 12 * MiB),),
        skipped=(("hdc", "cdrom"),),
    )
    window = Window(requested=QuiesceMode.AUTO, used="freeze", state_before="running",
                    frozen_filesystems=2, seconds=0.4567, note="agent")  # fmt: skip
    snapshot = {"kind": "thick", "size": 16 * MiB, "peak_fill_percent": 7.5, "extended": 4 * MiB}
    disk = RepoDisk(
        target="vda", size=64 * MiB, chunk_sha256="ab" * 32, chunks=("cd" * 32,) * 16,
        new_bytes=8 * MiB, stored_bytes=5 * MiB, volume="vg0/web01-root", snapshot=snapshot,
    )  # fmt: skip
    repo = Repository(LocalBackend(dest), REPO_CONFIG, Naming())
    counts = Counts(read=64 * MiB, new=8 * MiB, stored=5 * MiB, deduplicated=56 * MiB,
                    new_chunks=2, chunks=16)  # fmt: skip
    ok = GuestResult(
        name="web01", plan=plan, backup=BackupRef(repo, "web01", "20261104T020000Z"),
        window=window, disks=[disk], counts=counts,
    )  # fmt: skip
    failed = GuestResult(name="web02", error=NoSpaceError("vg0 has 1.0 MiB free", hint="add room"))
    return [ok, failed]


def CLEANUP_REPORT() -> CleanupReport:  # noqa: N802 - a fresh value each time
    return CleanupReport(
        resumed=["web01"], thawed=["db01"], snapshots=["vg0/web01-root-vmsnap-1"],
        volumes=["vg0/web02-vda"],
    )  # fmt: skip


def CLEANUP_UNRESOLVED() -> CleanupReport:  # noqa: N802 - a fresh value each time
    report = CLEANUP_REPORT()
    report.problems.append("cannot resume guest web02: it is gone")
    report.unresolved.append(GuestEntry("qemu:///system", "web02", "uuid-2", "pause"))
    return report


RESTORED = [
    RestoredDisk(target="vda", volume="vg0/web01-root-restored",
                 path="/dev/vg0/web01-root-restored", size=64 * MiB, chunk_sha256="ab" * 32,
                 created=True, sparse=False),
    RestoredDisk(target="vdb", volume="vg0/data", path="/dev/vg0/data", size=32 * MiB,
                 chunk_sha256="ef" * 32, created=False, sparse=True),
]  # fmt: skip

RESTORE_RESULT = RestoreResult("/srv/vmsnap/backups/web01/20261127T042319Z", RESTORED)

CLONE_RESULT = CloneResult(
    name="web09", uuid="99999999-2222-3333-4444-555555555555",
    xml="<domain type='kvm'><name>web09</name></domain>", defined=True, started=True,
    disks=RESTORED, backup="/srv/vmsnap/backups/web01/20261127T042319Z",
)  # fmt: skip

CHECKPOINT = Checkpoint(
    uuid=GUEST.uuid, name="web01", label="before-upgrade", created=1_800_000_000.0,
    expires=4_000_000_000.0,
    disks=(CheckpointDisk("vda", SNAP, ROOT), CheckpointDisk("vdb", THIN_SNAP, THIN, POOL)),
)  # fmt: skip
