"""Restore on real LVM from a repository (format 3): new LVs (thick and thin,
byte-identical, thin stays thin), existing LVs (too small, held open, --force),
each of two nights, image-store backups, corrupt and missing chunks."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from labkit import (
    POOL,
    VG,
    Lab,
    MiB,
    disk_xml,
    domain_xml,
    journal_left,
    lv_names,
    node_uri,
    sh,
    sha256_of,
    start_vmsnap,
    stopped,
    vmsnap,
    write_device,
)
from repokit import backed_up as backup_of
from repokit import chunk_file, repository


def backed_up(lab: Lab, tmp_path: Path, guest: str, disks: dict[str, str]) -> Path:
    """Back up a test-driver guest with the given target -> LV path into the
    repository tmp_path/repo; the backup's folder REPO/backups/<guest>/<time>."""
    uri = node_uri(tmp_path, [domain_xml(guest, [disk_xml(t, p) for t, p in disks.items()])])
    return backup_of(tmp_path, guest, uri)


def data_percent(lv: str) -> float:
    out = sh("lvs", "--noheadings", "-o", "data_percent", f"{VG}/{lv}").stdout
    return float(out.strip())


def test_restore_to_new_lvs_thick_and_thin(lab: Lab, tmp_path: Path) -> None:
    thick = lab.lv("rs-thick", 12)
    thin = lab.lv("rs-thin", 16, thin=True)
    folder = backed_up(lab, tmp_path, "rs", {"vda": thick, "vdb": thin})
    run = vmsnap("restore", str(folder), "--disk", "vda", "--vg", VG, "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["backup"] == str(folder)
    (done,) = doc["disks"]
    assert done["path"] == f"/dev/{VG}/rs-thick-restored"
    assert sha256_of(done["path"]) == sha256_of(thick)
    run = vmsnap("restore", "--dest", str(folder.parents[2]), "rs", "--disk", "vdb",
                 "--vg", VG, "--thin-pool", POOL, "--name", "rs-thin-copy")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sha256_of(f"/dev/{VG}/rs-thin-copy") == sha256_of(thin)


def test_thin_restore_stays_thin(lab: Lab, tmp_path: Path) -> None:
    sh("lvcreate", "-q", "-V", "64m", "-T", f"{VG}/{POOL}", "-n", "sparse-src")
    src = f"/dev/{VG}/sparse-src"
    write_device(src, b"data" * (MiB // 4), 8 * MiB)  # 1 MiB of data in 64 MiB
    folder = backed_up(lab, tmp_path, "sp", {"vda": src})
    run = vmsnap("restore", str(folder), "--vg", VG, "--thin-pool", POOL, "--name", "sparse-dst")
    assert run.returncode == 0, run.stderr
    assert "sparse" in run.stdout
    assert sha256_of(f"/dev/{VG}/sparse-dst") == sha256_of(src)
    assert data_percent("sparse-dst") < 15.0  # 4 MiB chunks at most: far below 100%


def test_restore_onto_existing_lv(lab: Lab, tmp_path: Path) -> None:
    src = lab.lv("ex-src", 8)
    folder = backed_up(lab, tmp_path, "ex", {"vda": src})
    small = lab.lv("ex-small", 4, seed="small")
    small_sum = sha256_of(small)
    run = vmsnap("restore", str(folder), "--to", small, "--force")
    assert run.returncode == 9
    assert "holds" in run.stderr
    assert sha256_of(small) == small_sum

    same = lab.lv("ex-same", 8, seed="same")
    same_sum = sha256_of(same)
    run = vmsnap("restore", str(folder), "--to", same)
    assert run.returncode == 9
    assert "--force" in run.stderr
    assert sha256_of(same) == same_sum

    with open(same, "rb") as held:  # an open LV: as a running guest would hold it
        holder = subprocess.Popen(["sleep", "120"], stdin=held)
    try:
        run = vmsnap("restore", str(folder), "--to", same, "--force")
        assert run.returncode == 9
        assert "in use" in run.stderr
    finally:
        holder.kill()
        holder.wait()
    assert sha256_of(same) == same_sum

    bigger = lab.lv("ex-bigger", 12, seed="bigger")
    run = vmsnap("restore", str(folder), "--to", bigger, "--force")
    assert run.returncode == 0, run.stderr
    assert "larger than the image" in run.stderr
    with open(bigger, "rb") as f:
        head = f.read(8 * MiB)
    with open(src, "rb") as f:
        assert head == f.read()


def test_corrupt_chunk_refused_by_restore_and_found_by_verify(lab: Lab, tmp_path: Path) -> None:
    src = lab.lv("cr-src", 8)
    folder = backed_up(lab, tmp_path, "cr", {"vda": src})
    chunk = chunk_file(folder, "vda", 1)
    blob = bytearray(chunk.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    chunk.write_bytes(bytes(blob))
    run = vmsnap("restore", str(folder), "--vg", VG)
    assert run.returncode == 10, run.stderr
    assert f"{folder}: chunk {chunk.name.removesuffix('.zst')} is corrupt" in run.stderr
    assert "cr-src-restored" not in lv_names()  # the new LV was removed again
    assert not journal_left()
    run = vmsnap("verify", str(folder))  # verify reads format 3 once its port lands
    assert run.returncode == 10
    assert "CORRUPT" in run.stdout


def test_missing_chunk_is_refused_before_anything_is_made(lab: Lab, tmp_path: Path) -> None:
    src = lab.lv("mc-src", 8)
    folder = backed_up(lab, tmp_path, "mc", {"vda": src})
    target = lab.lv("mc-old", 8, seed="old")
    old_sum = sha256_of(target)
    chunk_file(folder, "vda", 1).unlink()
    before = lv_names()
    run = vmsnap("restore", str(folder), "--vg", VG)
    assert run.returncode == 17, run.stderr
    assert f"{folder}: chunk " in run.stderr
    assert "is missing" in run.stderr
    run = vmsnap("restore", str(folder), "--to", target, "--force")
    assert run.returncode == 17, run.stderr
    assert lv_names() == before
    assert sha256_of(target) == old_sum  # not a byte written


def test_restore_each_of_two_nights(lab: Lab, tmp_path: Path) -> None:
    """The second backup after writes to the LV: each restores that night's bytes."""
    src = lab.lv("tw-src", 16)
    first = backed_up(lab, tmp_path, "tw", {"vda": src})
    first_sum = sha256_of(src)
    write_device(src, b"night two" * 1000, 9 * MiB)
    second = backed_up(lab, tmp_path, "tw", {"vda": src})
    assert first != second
    repo = str(repository(tmp_path))
    run = vmsnap("restore", str(first), "--vg", VG, "--name", "tw-one")
    assert run.returncode == 0, run.stderr
    run = vmsnap("restore", "--dest", repo, "tw", "--vg", VG, "--name", "tw-two")  # the newest
    assert run.returncode == 0, run.stderr
    run = vmsnap("restore", "--dest", repo, "tw", "--at", first.name, "--vg", VG,
                 "--name", "tw-one-again")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sha256_of(f"/dev/{VG}/tw-one") == sha256_of(f"/dev/{VG}/tw-one-again") == first_sum
    assert sha256_of(f"/dev/{VG}/tw-two") == sha256_of(src) != first_sum


def test_restore_of_an_image_store_backup(lab: Lab, tmp_path: Path) -> None:
    src = lab.lv("is-src", 12)
    repo = str(repository(tmp_path))
    run = vmsnap("image", "store", src, "--dest", repo, "--name", "is-img")
    assert run.returncode == 0, run.stderr
    run = vmsnap("restore", "--dest", repo, "is-img", "--vg", VG)
    assert run.returncode == 2
    assert "--name" in run.stderr
    run = vmsnap("restore", "--dest", repo, "is-img", "--vg", VG, "--thin-pool", POOL,
                 "--name", "is-thin")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sha256_of(f"/dev/{VG}/is-thin") == sha256_of(src)
    other = lab.lv("is-other", 12, seed="other")
    run = vmsnap("restore", "--dest", repo, "is-img", "--to", other, "--force")
    assert run.returncode == 0, run.stderr
    assert sha256_of(other) == sha256_of(src)


def test_kill_9_mid_restore_then_cleanup_removes_the_half_written_lv(
    lab: Lab, tmp_path: Path
) -> None:
    src = lab.lv("rk-src", 24)
    folder = backed_up(lab, tmp_path, "rk", {"vda": src})
    before = lv_names()
    proc = start_vmsnap("copying", "restore", str(folder), "--vg", VG)
    stopped(proc)  # its first chunk is written
    assert lv_names() - before == {"rk-src-restored"}
    assert lv_names("@vmsnap_unfinished") == {"rk-src-restored"}
    proc.kill()
    proc.communicate()

    run = vmsnap("cleanup", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert f"would remove unfinished LV {VG}/rk-src-restored" in run.stdout
    assert "rk-src-restored" in lv_names()
    run = vmsnap("cleanup")
    assert run.returncode == 0, run.stderr
    assert f"remove unfinished LV {VG}/rk-src-restored" in run.stdout
    assert lv_names() == before
    assert not journal_left()

    again = vmsnap("restore", str(folder), "--vg", VG)
    assert again.returncode == 0, again.stderr
    assert sha256_of(f"/dev/{VG}/rk-src-restored") == sha256_of(src)
    assert not lv_names("@vmsnap_unfinished")  # a complete LV loses the tag
    run = vmsnap("cleanup")
    assert "rk-src-restored" in lv_names()  # and no cleanup takes it


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_restore_removes_every_new_lv(
    lab: Lab, tmp_path: Path, signum: int, status: int
) -> None:
    disks = {"vda": lab.lv(f"rs{signum}-a", 12), "vdb": lab.lv(f"rs{signum}-b", 12)}
    folder = backed_up(lab, tmp_path, f"rs{signum}", disks)
    before = lv_names()
    proc = start_vmsnap("copying", "restore", str(folder), "--vg", VG, "--name", f"sg{signum}")
    stopped(proc)  # inside the first disk: the LV of the first exists
    assert f"sg{signum}-vda" in lv_names()
    proc.send_signal(signum)
    proc.send_signal(signal.SIGCONT)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == status, err
    assert "interrupted" in err
    assert lv_names() == before
    assert not journal_left()
