"""verify.py on real backup folders: every kind of damage is found, each with
its own status and message, checked against the real zstd CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from backupkit import (
    STAMP,
    disk_data,
    edit_manifest,
    flip_bit,
    make_backup,
    manifest_doc,
    read_manifest,
    truncate,
    write_manifest,
)

from vmsnap import frames, image, manifest, store
from vmsnap.errors import ExitCode, IntegrityError, NotFoundError, TruncatedError
from vmsnap.progress import NoProgress
from vmsnap.verify import (
    UNPUBLISHED,
    BackupReport,
    DiskStatus,
    backup_folders,
    exit_code,
    verify_backup,
    verify_paths,
    worst,
)

OK, CORRUPT, MISSING, INCOMPLETE = (
    DiskStatus.OK,
    DiskStatus.CORRUPT,
    DiskStatus.MISSING,
    DiskStatus.INCOMPLETE,
)


class Recorder:
    """A Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.advanced = 0

    def job(self, label: str, total: int) -> None:
        self.events.append(("job", (label, total)))

    def item(self, label: str, total: int | None) -> None:
        self.events.append(("item", (label, total)))

    def advance(self, nbytes: int) -> None:
        self.advanced += nbytes

    def item_done(self) -> None:
        self.events.append(("item_done", None))

    def job_done(self) -> None:
        self.events.append(("job_done", None))


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    return make_backup(tmp_path / "dest")


def check(folder: Path) -> BackupReport:
    return verify_backup(folder, Recorder())


def statuses(report: BackupReport) -> dict[str, DiskStatus]:
    return {d.target: d.status for d in report.disks}


def zstd_t(path: Path) -> int:
    run = subprocess.run(["zstd", "-t", "-q", str(path)], capture_output=True, check=False)
    return run.returncode


# ---------------------------------------------------------------- good backups


def test_a_good_backup_is_ok(backup: Path) -> None:
    progress = Recorder()
    report = verify_backup(backup, progress)
    assert report.ok
    assert report.status is OK
    assert report.manifest_ok
    assert report.directory == backup
    assert report.message == "2 disk(s) OK"
    found = manifest.load(backup)
    assert [(d.target, d.image, d.status, d.message) for d in report.disks] == [
        ("vda", "vda.img.zst", OK, "OK"),
        ("vdb", "vdb.img.zst", OK, "OK"),
    ]
    assert [(d.size, d.chunk_sha256) for d in report.disks] == [
        (d.size, d.chunk_sha256) for d in found.disks
    ]
    assert exit_code([report]) == ExitCode.OK
    for disk in found.disks:  # the zstd CLI agrees
        assert zstd_t(backup / disk.image) == 0


def test_progress_covers_every_byte(backup: Path) -> None:
    progress = Recorder()
    verify_backup(backup, progress)
    sizes = [d.size for d in manifest.load(backup).disks]
    assert progress.advanced == sum(sizes)
    assert progress.events == [
        ("job", (f"web01 {STAMP}", sum(sizes))),
        ("item", ("vda (vda.img.zst)", sizes[0])),
        ("item_done", None),
        ("item", ("vdb (vdb.img.zst)", sizes[1])),
        ("item_done", None),
        ("job_done", None),
    ]


def test_an_empty_disk_is_ok(tmp_path: Path) -> None:
    assert check(make_backup(tmp_path, disks={"vda": b""})).ok


def test_an_image_made_by_the_zstd_cli_in_several_frames_is_ok(backup: Path) -> None:
    """Readers must accept any number of frames (vmsnap-format(5))."""
    data = disk_data(0)
    parts = [data[:100_000], data[100_000:]]
    frames = b"".join(
        subprocess.run(["zstd", "-q", "-c"], input=p, capture_output=True, check=True).stdout
        for p in parts
    )
    (backup / "vda.img.zst").write_bytes(frames)
    edit_manifest(backup, lambda d: d["disks"][0].update(compressed_size=len(frames)), reseal=True)
    assert statuses(check(backup)) == {"vda": OK, "vdb": OK}


# ---------------------------------------------------------------- damaged images


@pytest.mark.parametrize("where", [0.5, 0.1, 0.99])
def test_a_flipped_bit_is_corrupt(backup: Path, where: float) -> None:
    img = backup / "vda.img.zst"
    flip_bit(img, int(img.stat().st_size * where))
    assert zstd_t(img) != 0
    report = check(backup)
    assert statuses(report) == {"vda": CORRUPT, "vdb": OK}
    assert "checksum" in report.disks[0].message
    assert report.status is CORRUPT
    assert not report.ok
    assert report.message == "1 of 2 disk(s) failed: vda CORRUPT"
    assert exit_code([report]) == ExitCode.INTEGRITY


HEADER_FRAME = len(frames.header_frame(None, image.CHUNK))


def test_a_flipped_bit_in_a_frame_header_is_corrupt(backup: Path) -> None:
    # the reserved bit of the first zstd frame's descriptor, after the image header
    flip_bit(backup / "vda.img.zst", HEADER_FRAME + 4, bit=3)
    report = check(backup)
    assert report.disks[0].status is CORRUPT
    assert "reserved bit" in report.disks[0].message


@pytest.mark.parametrize("offset", [4, 8, 16, 24])  # size field, id, raw size, chunk size
def test_a_flipped_bit_in_the_image_header_is_corrupt(backup: Path, offset: int) -> None:
    flip_bit(backup / "vda.img.zst", offset, bit=1)
    report = check(backup)
    assert report.disks[0].status is CORRUPT, report.disks[0].message


@pytest.mark.parametrize(
    "keep",
    [
        pytest.param(lambda n: n // 2, id="half"),
        pytest.param(lambda n: n - 4, id="checksum-missing"),
        pytest.param(lambda n: n - 1, id="checksum-cut"),
        pytest.param(lambda n: 6, id="header-cut"),
    ],
)
def test_a_truncated_image_is_incomplete(backup: Path, keep: Any) -> None:
    img = backup / "vdb.img.zst"
    full = img.stat().st_size
    truncate(img, keep(full))
    assert zstd_t(img) != 0
    report = check(backup)
    assert statuses(report) == {"vda": OK, "vdb": INCOMPLETE}
    message = report.disks[1].message
    assert message.startswith("image is truncated: it ends inside a zstd frame")
    assert f"(the file holds {keep(full)} of its {full} bytes)" in message
    assert report.status is INCOMPLETE
    assert exit_code([report]) == ExitCode.INTEGRITY


def test_an_empty_image_is_incomplete(backup: Path) -> None:
    truncate(backup / "vda.img.zst", 0)
    report = check(backup)
    assert report.disks[0].status is INCOMPLETE
    assert report.disks[0].message.startswith("image is empty")


def test_an_image_cut_between_frames_is_incomplete(backup: Path) -> None:
    """zstd's checksums cannot see a whole frame missing: the length can."""
    data = disk_data(0)
    first = subprocess.run(
        ["zstd", "-q", "-c"], input=data[:100_000], capture_output=True, check=True
    ).stdout
    (backup / "vda.img.zst").write_bytes(first)
    report = check(backup)
    assert report.disks[0].status is INCOMPLETE
    assert f"decodes to 100000 bytes, {len(data)} expected" in report.disks[0].message


def test_a_missing_image_is_missing(backup: Path) -> None:
    (backup / "vda.img.zst").unlink()
    report = check(backup)
    assert statuses(report) == {"vda": MISSING, "vdb": OK}
    assert report.disks[0].message == "vda.img.zst is missing"
    assert report.status is MISSING
    assert exit_code([report]) == ExitCode.INTEGRITY


def test_every_image_missing(backup: Path) -> None:
    for img in backup.glob("*.img.zst"):
        img.unlink()
    report = check(backup)
    assert statuses(report) == {"vda": MISSING, "vdb": MISSING}
    assert report.message == "2 of 2 disk(s) failed: vda MISSING, vdb MISSING"


def test_an_image_swapped_for_another_is_corrupt(backup: Path) -> None:
    (backup / "vda.img.zst").write_bytes((backup / "vdb.img.zst").read_bytes())
    report = check(backup)
    assert report.disks[0].status is CORRUPT
    assert "chunk sha256 mismatch" in report.disks[0].message


def test_garbage_after_the_last_frame_is_corrupt(backup: Path) -> None:
    with (backup / "vda.img.zst").open("ab") as f:
        f.write(b"trailing junk")
    report = check(backup)
    assert report.disks[0].status is CORRUPT
    assert "not a zstd frame" in report.disks[0].message


def test_an_extra_frame_after_the_last_is_corrupt(backup: Path) -> None:
    out = io.BytesIO()
    image.compress(io.BytesIO(b"more"), out, size=4)
    with (backup / "vda.img.zst").open("ab") as f:
        f.write(out.getvalue())
    report = check(backup)
    assert report.disks[0].status is CORRUPT
    assert "decodes to" in report.disks[0].message


def test_an_empty_skippable_frame_appended_changes_only_the_size(backup: Path) -> None:
    with (backup / "vda.img.zst").open("ab") as f:
        f.write((0x184D2A50).to_bytes(4, "little") + (0).to_bytes(4, "little"))
    report = check(backup)
    assert report.disks[0].status is CORRUPT
    assert report.disks[0].message.startswith("image is ")
    assert "the manifest says" in report.disks[0].message


def test_a_folder_in_place_of_an_image_is_corrupt(backup: Path) -> None:
    (backup / "vda.img.zst").unlink()
    (backup / "vda.img.zst").mkdir()
    report = check(backup)
    assert report.disks[0].status is CORRUPT
    assert report.disks[0].message == "vda.img.zst: not a regular file"


def test_a_fifo_in_place_of_an_image_does_not_hang(backup: Path) -> None:
    (backup / "vda.img.zst").unlink()
    os.mkfifo(backup / "vda.img.zst")
    report = check(backup)
    assert report.disks[0].message == "vda.img.zst: not a regular file"


# ---------------------------------------------------------------- the manifest


def test_an_edited_domain_name_breaks_the_seal(backup: Path) -> None:
    edit_manifest(backup, lambda d: d["domain"].update(name="db01"))
    report = check(backup)
    assert not report.manifest_ok
    assert report.status is CORRUPT
    assert report.disks == ()
    assert "seal does not match" in report.message
    assert exit_code([report]) == ExitCode.INTEGRITY


def test_an_edited_digest_breaks_the_seal(backup: Path) -> None:
    edit_manifest(backup, lambda d: d["disks"][0].update(chunk_sha256="0" * 64))
    report = check(backup)
    assert not report.manifest_ok
    assert "seal" in report.message


def test_an_edited_digest_with_a_recomputed_seal_is_corrupt(backup: Path) -> None:
    edit_manifest(backup, lambda d: d["disks"][0].update(chunk_sha256="0" * 64), reseal=True)
    report = check(backup)
    assert report.manifest_ok
    assert statuses(report) == {"vda": CORRUPT, "vdb": OK}
    assert "chunk sha256 mismatch" in report.disks[0].message


@pytest.mark.parametrize(("delta", "status"), [(1, INCOMPLETE), (-1, CORRUPT)])
def test_an_edited_size_with_a_recomputed_seal(
    backup: Path, delta: int, status: DiskStatus
) -> None:
    edit_manifest(backup, lambda d: d["disks"][0].update(size=d["disks"][0]["size"] + delta))
    assert "seal" in check(backup).message
    edit_manifest(backup, lambda d: None, reseal=True)
    report = check(backup)
    assert report.disks[0].status is status
    assert "image decodes to" in report.disks[0].message


def test_an_edited_compressed_size_with_a_recomputed_seal_is_corrupt(backup: Path) -> None:
    edit_manifest(backup, lambda d: d["disks"][1].update(compressed_size=1), reseal=True)
    report = check(backup)
    assert report.disks[1].status is CORRUPT
    assert report.disks[1].message.endswith("bytes, the manifest says 1")


def test_an_unknown_format_version_is_rejected(backup: Path) -> None:
    edit_manifest(backup, lambda d: d.update(format_version=3), reseal=True)
    report = check(backup)
    assert not report.manifest_ok
    assert report.status is CORRUPT
    assert "format_version 3 is not one this vmsnap reads (2)" in report.message


def test_an_image_outside_the_folder_is_rejected_unread(backup: Path) -> None:
    outside = backup.parent / "x"
    outside.write_bytes((backup / "vda.img.zst").read_bytes())
    edit_manifest(backup, lambda d: d["disks"][0].update(image="../x"), reseal=True)
    progress = Recorder()
    report = verify_backup(backup, progress)
    assert not report.manifest_ok
    assert "image name '../x' is not a plain file name" in report.message
    assert progress.events == []  # nothing was decoded


def test_a_missing_manifest_is_missing(backup: Path) -> None:
    (backup / store.MANIFEST).unlink()
    report = check(backup)
    assert report.status is MISSING
    assert not report.manifest_ok
    assert "manifest.json is missing" in report.message


def test_an_unsealed_manifest_is_rejected(tmp_path: Path) -> None:
    """What a vmsnap that forgot to seal would write."""
    folder = make_backup(tmp_path)
    doc = manifest.load(folder)
    entries = [
        {
            "target": d.target,
            "volume": d.volume,
            "size": d.size,
            "chunk_sha256": d.chunk_sha256,
            "image": d.image,
            "compressed_size": d.compressed_size,
            "snapshot": {"kind": d.snapshot_kind, "size": d.snapshot_size},
        }
        for d in doc.disks
    ]
    write_manifest(folder, manifest_doc("web01", entries))
    report = check(folder)
    assert report.status is CORRUPT
    assert "no seal" in report.message


# ---------------------------------------------------------------- paths


def partial(guest_folder: Path, stamp: str = "20261128T000000Z") -> Path:
    folder = guest_folder / f"{stamp}{store.PARTIAL_SUFFIX}"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    dest = tmp_path / "dest"
    make_backup(dest, "web01", "20261126T042319Z", {"vda": disk_data(1)})
    make_backup(dest, "web01", STAMP, {"vda": disk_data(2), "vdb": disk_data(3)})
    make_backup(dest, "db01", STAMP, {"vda": disk_data(4)})
    return dest


def test_verify_a_whole_destination(dest: Path) -> None:
    reports = verify_paths([dest], Recorder())
    assert [r.directory.relative_to(dest) for r in reports] == [
        Path("db01", STAMP),
        Path("web01", "20261126T042319Z"),
        Path("web01", STAMP),
    ]
    assert all(r.ok for r in reports)
    assert exit_code(reports) == ExitCode.OK


def test_one_bad_backup_among_good_ones(dest: Path) -> None:
    flip_bit(dest / "db01" / STAMP / "vda.img.zst", 1000)
    reports = verify_paths([dest], Recorder())
    assert [r.status for r in reports] == [CORRUPT, OK, OK]
    assert exit_code(reports) == ExitCode.INTEGRITY


def test_a_partial_folder_is_an_incomplete_backup(dest: Path) -> None:
    leftover = partial(dest / "web01")
    reports = verify_paths([dest / "web01"], Recorder())
    assert [r.directory for r in reports] == [
        dest / "web01" / "20261126T042319Z",
        dest / "web01" / STAMP,
        leftover,
    ]
    last = reports[-1]
    assert (last.status, last.manifest_ok, last.message, last.disks) == (
        INCOMPLETE,
        False,
        UNPUBLISHED,
        (),
    )
    assert exit_code(reports) == ExitCode.INTEGRITY
    assert verify_paths([leftover], Recorder())[0].message == UNPUBLISHED


def test_overlapping_paths_verify_each_backup_once(dest: Path) -> None:
    paths = [dest / "web01" / STAMP, dest, dest / "web01", dest / "db01" / ".." / "db01"]
    folders = backup_folders(paths)
    assert folders[0] == dest / "web01" / STAMP
    assert len(folders) == 3


def test_a_path_that_does_not_exist_is_not_found(dest: Path) -> None:
    with pytest.raises(NotFoundError) as info:
        verify_paths([dest, dest / "nobody"], Recorder())
    assert info.value.exit_code == ExitCode.NOT_FOUND


def test_a_folder_without_backups_is_not_found(dest: Path) -> None:
    (dest / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no backups there"):
        verify_paths([dest / "empty"], Recorder())


def test_paths_are_all_checked_before_anything_is_decoded(dest: Path) -> None:
    progress = Recorder()
    with pytest.raises(NotFoundError):
        verify_paths([dest, dest / "nobody"], progress)
    assert progress.events == []


# ---------------------------------------------------------------- statuses


def test_worst() -> None:
    assert worst([]) is OK
    assert worst([OK, OK]) is OK
    assert worst([OK, INCOMPLETE, MISSING]) is MISSING
    assert worst([INCOMPLETE, CORRUPT, MISSING]) is CORRUPT
    assert worst([OK, INCOMPLETE]) is INCOMPLETE


def test_statuses_are_json_friendly_strings() -> None:
    assert [str(s) for s in DiskStatus] == ["OK", "CORRUPT", "MISSING", "INCOMPLETE"]


def test_truncation_is_an_integrity_error_of_its_own() -> None:
    stats = image.StreamStats(size=10, chunk_sha256="0" * 64, compressed_size=5)
    with pytest.raises(TruncatedError) as info:
        image.check(stats, expected_size=11, expected_digest=None)
    assert info.value.exit_code == ExitCode.INTEGRITY
    with pytest.raises(IntegrityError) as longer:
        image.check(stats, expected_size=9, expected_digest=None)
    assert not isinstance(longer.value, TruncatedError)


def test_an_edited_domain_xml_is_caught(tmp_path: Path) -> None:
    folder = make_backup(tmp_path / "dest", "web01")
    xml = folder / "domain.xml"
    doc = read_manifest(folder)
    doc.pop("seal")
    doc["domain"]["xml_sha256"] = hashlib.sha256(xml.read_bytes()).hexdigest()
    write_manifest(folder, manifest.seal(doc))
    assert verify_backup(folder, NoProgress()).ok
    xml.write_text(xml.read_text().replace("web01", "evil"))
    report = verify_backup(folder, NoProgress())
    assert report.status == CORRUPT
    assert "domain.xml was changed" in report.message


def test_verify_paths_records_each_result_in_verified_json(dest: Path) -> None:
    flip_bit(dest / "db01" / STAMP / "vda.img.zst", 1000)
    verify_paths([dest], Recorder())
    recorded = {
        p.parent.parent.name + "/" + p.parent.name: json.loads(p.read_text())["status"]
        for p in sorted(dest.glob("*/*/verified.json"))
    }
    assert recorded == {
        f"db01/{STAMP}": "CORRUPT",
        "web01/20261126T042319Z": "OK",
        f"web01/{STAMP}": "OK",
    }
