"""vmsnap.verify on real format-3 backups built by backupkit: every chunk's
existence, a sample or all of them decoded, the manifest's seal, domain.xml;
and what is recorded in verified.json."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from backupkit import STAMP, chunk_path, edit_manifest, flip_bit, make_backup, random_bytes

from vmsnap import catalog, verify
from vmsnap.errors import ExitCode, NotFoundError
from vmsnap.progress import NoProgress
from vmsnap.repo import check, refs
from vmsnap.repo.repository import open_local

LATER = "20261128T042319Z"
MiB = 1 << 20


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "repo"


def run(dest: Path, *, read_data: bool = True, sample: int = 0) -> verify.VerifyRun:
    found = verify.backups_of(open_local(dest), None)
    return verify.verify(found, read_data=read_data, sample=sample, progress=NoProgress())


def statuses(result: verify.VerifyRun) -> list[str]:
    return [str(r.status) for r in result.reports]


def test_good_backups_are_ok_and_recorded(dest: Path) -> None:
    make_backup(dest)
    make_backup(dest, stamp=LATER)
    result = run(dest)
    assert statuses(result) == ["OK", "OK"]
    assert result.decoded == result.chunks > 0
    assert verify.exit_code(result) == ExitCode.OK
    [guest] = catalog.scan(open_local(dest))
    assert [b.verified.status if b.verified else None for b in guest.backups] == ["OK", "OK"]


def test_the_default_decodes_a_sample_and_checks_every_chunk_exists(dest: Path) -> None:
    make_backup(dest, disks={"vda": random_bytes(5 * 4 * MiB // 4 + 10, 3)})  # 2 chunks
    make_backup(dest, stamp=LATER, disks={"vda": random_bytes(3 * 4 * MiB, 4)})  # 3 more
    found = verify.backups_of(open_local(dest), None)
    result = verify.verify(found, read_data=False, sample=2, progress=NoProgress())
    assert (result.chunks, result.decoded, result.read_data) == (5, 2, False)
    assert result.ok


def test_a_flipped_byte_is_corrupt_and_names_every_backup_using_the_chunk(dest: Path) -> None:
    data = {"vda": random_bytes(6000, 1)}
    first = make_backup(dest, disks=data)
    make_backup(dest, stamp=LATER, disks=data)  # the same chunk
    victim = chunk_path(dest, first)
    flip_bit(victim, victim.stat().st_size // 2)
    result = run(dest)
    assert statuses(result) == ["CORRUPT", "CORRUPT"]
    [(repo, bad)] = result.bad_chunks
    line = verify.chunk_problem(repo, bad)
    assert victim.name.removesuffix(".zst") in line
    assert "is corrupt" in line
    assert f"{dest}/backups/web01/{STAMP}" in line
    assert f"{dest}/backups/web01/{LATER}" in line
    assert verify.exit_code(result) == ExitCode.INTEGRITY


def test_a_sampled_run_finds_a_corrupt_chunk_when_it_samples_it(dest: Path) -> None:
    folder = make_backup(dest, disks={"vda": random_bytes(6000, 1)})
    flip_bit(chunk_path(dest, folder), 20)
    result = run(dest, read_data=False, sample=1)  # one chunk: sampled for sure
    assert statuses(result) == ["CORRUPT"]


def test_a_missing_chunk_is_missing_17_and_corrupt_wins(dest: Path) -> None:
    one = make_backup(dest, disks={"vda": random_bytes(6000, 1)})
    two = make_backup(dest, stamp=LATER, disks={"vda": random_bytes(6000, 2)})
    chunk_path(dest, one).unlink()
    result = run(dest, read_data=False, sample=0)  # existence is always checked
    assert statuses(result) == ["MISSING", "OK"]
    assert "is missing" in result.reports[0].lines()[0]
    assert verify.exit_code(result) == ExitCode.MISSING_DATA == 17
    flip_bit(chunk_path(dest, two), 20)
    result = run(dest)
    assert statuses(result) == ["MISSING", "CORRUPT"]
    assert verify.exit_code(result) == ExitCode.INTEGRITY


def test_an_edited_manifest_breaks_the_seal(dest: Path) -> None:
    folder = make_backup(dest)
    edit_manifest(folder, lambda doc: doc.update(name="other"))
    result = run(dest)
    assert statuses(result) == ["CORRUPT"]
    assert "seal" in result.reports[0].problems[0]
    assert result.reports[0].disks == ()


@pytest.mark.parametrize("bad", ["../../config", "00/../../x", "A" * 64])
def test_a_chunk_named_by_a_path_is_refused_unread(dest: Path, bad: str) -> None:
    folder = make_backup(dest)
    edit_manifest(folder, lambda doc: doc["disks"][0]["chunks"].__setitem__(0, bad), reseal=True)
    result = run(dest)
    assert statuses(result) == ["CORRUPT"]
    assert "chunk ids" in result.reports[0].problems[0]


def test_an_edited_domain_xml_is_caught(dest: Path) -> None:
    folder = make_backup(dest)
    (folder / "domain.xml").write_text("<domain type='kvm'><name>evil</name></domain>")
    result = run(dest)
    assert statuses(result) == ["CORRUPT"]
    assert "domain.xml was changed or damaged" in result.reports[0].problems[0]
    (folder / "domain.xml").unlink()
    assert "domain.xml is missing" in run(dest).reports[0].problems[0]


def test_paths_name_a_repository_a_guest_or_a_backup_each_once(dest: Path) -> None:
    a = make_backup(dest)
    make_backup(dest, stamp=LATER)
    make_backup(dest, "db01")
    found = verify.backups_at([a, dest / "backups" / "web01", dest])
    assert [(r.guest, r.stamp) for r in found] == [
        ("web01", STAMP),
        ("web01", LATER),
        ("db01", STAMP),
    ]


def test_a_folder_with_no_published_backup(dest: Path) -> None:
    folder = make_backup(dest)
    (folder / "manifest.json").unlink()
    with pytest.raises(NotFoundError, match="not a published backup"):
        verify.backups_at([folder])
    with pytest.raises(NotFoundError, match="no backups"):
        verify.backups_at([dest / "backups" / "web01"])


def test_the_sample_is_random_but_bounded(dest: Path) -> None:
    make_backup(dest, disks={"vda": random_bytes(3 * 4 * MiB, 5)})
    repo = open_local(dest)
    names = [r.manifest_name for r in refs.backups(repo)]
    report = check.check(repo, names, read_data=False, sample=99, rng=random.Random(1))
    assert (report.chunks, report.decoded) == (3, 3)


def test_a_bad_chunk_names_the_backups_that_were_not_checked_too(dest: Path) -> None:
    data = {"vda": random_bytes(6000, 1)}
    first = make_backup(dest, disks=data)
    make_backup(dest, "db01", LATER, disks=data)  # the same chunk, another guest
    flip_bit(chunk_path(dest, first), 20)
    found = verify.backups_at([first])
    result = verify.verify(found, read_data=True, sample=0, progress=NoProgress())
    assert statuses(result) == ["CORRUPT"]
    [(_repo, bad)] = result.bad_chunks
    assert bad.backups == (
        f"backups/db01/{LATER}/manifest.json",
        f"backups/web01/{STAMP}/manifest.json",
    )
