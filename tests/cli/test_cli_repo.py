"""The chunk repository (format 3) through the CLI: vmsnap init, image store
and export, on real files, checked with the real zstd, jq and cat, and
killed with real signals."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import VMSNAP, Main, one_line_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
from labkit import stopped

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from backupkit import random_bytes

from vmsnap import manifest as sealed
from vmsnap.digest import CHUNK
from vmsnap.errors import ExitCode
from vmsnap.image import zero_frame

MAN5 = Path(__file__).resolve().parents[2] / "man" / "vmsnap-format.5"


def chunk_data(i: int) -> bytes:
    """A distinct, cheap to compress 4 MiB chunk."""
    return hashlib.sha256(f"chunk {i}".encode()).digest() * (CHUNK // 32)


def write_volume(path: Path, chunks: list[bytes], tail: bytes = b"") -> bytes:
    with path.open("wb") as f:
        for c in chunks:
            f.write(c)
        f.write(tail)
    return b"".join(chunks) + tail


@pytest.fixture
def repo(main: Main, tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    code, _out, err = main("init", "--dest", str(path))
    assert code == 0, err
    return path


def store(main: Main, repo: Path, src: Path, name: str) -> dict[str, int]:
    code, out, err = main(
        "image", "store", str(src), "--dest", str(repo), "--name", name, "--no-progress", "--json"
    )
    assert code == 0, err
    doc: dict[str, int] = json.loads(out)
    return doc


def chunk_files(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "chunks").rglob("*.zst"))


def manifests(repo: Path) -> list[Path]:
    return sorted((repo / "backups").rglob("manifest.json"))


def export(main: Main, repo: Path, name: str, out: Path, *extra: str) -> tuple[int, str]:
    code, _out, err = main(
        "export", "--dest", str(repo), name, "-o", str(out), "--no-progress", *extra
    )
    return code, err


def unzstd(path: Path) -> bytes:
    return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout


# ---------------------------------------------------------------- storing


def test_init_store_export_round_trip(main: Main, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "disk.raw"
    data = write_volume(src, [chunk_data(i) for i in range(3)], tail=b"odd tail" * 1000)
    doc = store(main, repo, src, "disk")
    assert doc["size"] == len(data)
    assert (doc["chunks"], doc["new_chunks"], doc["read_bytes"]) == (4, 4, len(data))
    assert doc["new_bytes"] == len(data)
    assert doc["deduplicated_bytes"] == 0
    assert doc["stored_bytes"] == sum(p.stat().st_size for p in chunk_files(repo))

    image = tmp_path / "disk.img.zst"
    code, err = export(main, repo, "disk", image)
    assert code == 0, err
    assert unzstd(image) == data
    loaded = tmp_path / "loaded.raw"
    code, _out, err = main("image", "load", "--no-progress", str(image), str(loaded))
    assert code == 0, err
    assert loaded.read_bytes() == data


def test_a_second_store_with_one_percent_changed_stores_only_that(
    main: Main, repo: Path, tmp_path: Path
) -> None:
    chunks = [chunk_data(i) for i in range(100)]
    src = tmp_path / "vol.raw"
    first_data = write_volume(src, chunks)
    first = store(main, repo, src, "vol")
    assert first["new_chunks"] == 100
    chunks[37] = chunk_data(1000)
    second_data = write_volume(src, chunks)
    second = store(main, repo, src, "vol")
    assert second["read_bytes"] == 100 * CHUNK
    assert (second["new_chunks"], second["new_bytes"]) == (1, CHUNK)
    assert second["deduplicated_bytes"] == 99 * CHUNK
    assert second["stored_bytes"] < first["stored_bytes"] * 0.03
    assert len(chunk_files(repo)) == 101
    stamps = sorted(p.parent.name for p in manifests(repo))
    for stamp, data in zip(stamps, (first_data, second_data), strict=True):
        out = tmp_path / f"{stamp}.img"
        assert export(main, repo, "vol", out, "--at", stamp)[0] == 0
        assert unzstd(out) == data


def test_the_same_bytes_under_two_names_are_stored_once(
    main: Main, repo: Path, tmp_path: Path
) -> None:
    src = tmp_path / "template.raw"
    write_volume(src, [chunk_data(i) for i in range(4)])
    assert store(main, repo, src, "template")["new_chunks"] == 4
    clone = store(main, repo, src, "clone")
    assert (clone["new_chunks"], clone["deduplicated_bytes"]) == (0, 4 * CHUNK)
    assert len(chunk_files(repo)) == 4
    assert len(manifests(repo)) == 2


def test_zero_chunks_are_stored_once(main: Main, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "zeros.raw"  # written zeros, not a sparse file
    data = write_volume(src, [bytes(CHUNK)] * 6 + [chunk_data(1)] + [bytes(CHUNK)] * 3)
    doc = store(main, repo, src, "zeros")
    assert (doc["chunks"], doc["new_chunks"], doc["deduplicated_bytes"]) == (10, 2, 8 * CHUNK)
    zero_file = [p for p in chunk_files(repo) if p.read_bytes() == zero_frame()]
    assert len(zero_file) == 1
    assert len(chunk_files(repo)) == 2
    out = tmp_path / "zeros.img"
    assert export(main, repo, "zeros", out)[0] == 0
    assert unzstd(out) == data


def test_an_empty_source_is_a_backup_of_no_chunks(main: Main, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "empty.raw"
    src.write_bytes(b"")
    assert store(main, repo, src, "empty")["chunks"] == 0
    out = tmp_path / "empty.img"
    assert export(main, repo, "empty", out)[0] == 0
    assert unzstd(out) == b""


def test_a_stale_index_is_rebuilt_when_the_epoch_changes(
    main: Main, repo: Path, tmp_path: Path
) -> None:
    src = tmp_path / "vol.raw"
    data = write_volume(src, [chunk_data(i) for i in range(3)])
    store(main, repo, src, "vol")
    chunk_files(repo)[0].unlink()  # what a garbage collection does, after changing the epoch
    (repo / "epoch").write_text("1\n")
    assert store(main, repo, src, "vol")["new_chunks"] == 1
    out = tmp_path / "vol.img"
    assert export(main, repo, "vol", out)[0] == 0
    assert unzstd(out) == data


def test_a_lost_index_costs_a_listing_not_a_rewrite(main: Main, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "vol.raw"
    write_volume(src, [chunk_data(i) for i in range(3)])
    store(main, repo, src, "vol")
    for db in (tmp_path / "cache").rglob("chunks.sqlite"):
        db.unlink()
    assert store(main, repo, src, "vol")["new_chunks"] == 0


# ---------------------------------------------------------------- stock tools


def man_recipe() -> str:
    """The stock-tools recipe of vmsnap-format(5), as shell text."""
    page = MAN5.read_text()
    section = page[page.index(".SH RESTORING WITH STOCK TOOLS") :]
    block = section[section.index(".EX\n") + 4 : section.index(".EE\n")]
    return block.replace(r"\-", "-").replace(r"\(aq", "'").replace(r"\e", "\\")


def test_the_stock_tools_recipe_of_the_man_page_gives_the_bytes(
    main: Main, repo: Path, tmp_path: Path
) -> None:
    src = tmp_path / "vda.raw"
    data = write_volume(src, [chunk_data(1), bytes(CHUNK), chunk_data(2)], tail=b"x" * 4097)
    store(main, repo, src, "web01")
    (stamp,) = [p.parent.name for p in manifests(repo)]
    recipe = man_recipe().replace("/srv/repo", str(repo)).replace("20261202T011000Z", stamp)
    recipe = recipe.replace('"vda"', '"web01"')  # image store names its one disk NAME
    assert "jq -r" in recipe
    assert "zstd -dc" in recipe
    subprocess.run(["bash", "-euo", "pipefail", "-c", recipe], check=True, timeout=60)
    assert (repo / "vda.raw").read_bytes() == data


# ---------------------------------------------------------------- crashes


@pytest.mark.parametrize("point", ["streaming", "publishing"])
def test_kill_9_mid_store_leaves_no_backup_and_a_rerun_completes(
    main: Main, repo: Path, tmp_path: Path, point: str
) -> None:
    src = tmp_path / "vol.raw"
    data = write_volume(src, [chunk_data(i) for i in range(24)])
    args = ["image", "store", str(src), "--dest", str(repo), "--name", "vol", "--no-progress"]
    env = dict(os.environ, VMSNAP_FAILPOINT=point)
    proc = subprocess.Popen([VMSNAP, *args], env=env, stderr=subprocess.PIPE)
    stopped(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stderr is not None
    proc.stderr.close()
    assert manifests(repo) == []
    for path in chunk_files(repo):  # every chunk that is visible is whole
        assert len(unzstd(path)) == CHUNK
    again = store(main, repo, src, "vol")
    assert again["new_chunks"] + again["deduplicated_bytes"] // CHUNK == 24
    if point == "publishing":
        assert again["new_chunks"] == 0  # found in the repository, not written again
    out = tmp_path / "vol.img"
    assert export(main, repo, "vol", out)[0] == 0
    assert unzstd(out) == data


# ---------------------------------------------------------------- damage and bad input


def test_a_flipped_byte_in_a_chunk_is_found_on_export(
    main: Main, repo: Path, tmp_path: Path
) -> None:
    src = tmp_path / "vol.raw"
    write_volume(src, [chunk_data(i) for i in range(3)])
    store(main, repo, src, "vol")
    victim = chunk_files(repo)[1]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    victim.write_bytes(bytes(raw))
    out = tmp_path / "vol.img"
    code, err = export(main, repo, "vol", out)
    assert code == ExitCode.INTEGRITY == 10
    line = one_line_error(err)
    assert victim.name.removesuffix(".zst") in line
    assert "corrupt" in line
    assert "backups/vol/" in line  # it names the backup
    assert not out.exists()


def test_a_missing_chunk_is_one_line_and_exit_17(main: Main, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "vol.raw"
    write_volume(src, [chunk_data(i) for i in range(2)])
    store(main, repo, src, "vol")
    gone = chunk_files(repo)[0]
    gone.unlink()
    code, err = export(main, repo, "vol", tmp_path / "vol.img")
    assert code == ExitCode.MISSING_DATA == 17
    line = one_line_error(err)
    assert gone.name.removesuffix(".zst") in line
    assert "missing" in line


def test_a_manifest_naming_a_path_is_refused(main: Main, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "vol.raw"
    write_volume(src, [chunk_data(1)])
    store(main, repo, src, "vol")
    (path,) = manifests(repo)
    doc = json.loads(path.read_text())
    doc["disks"][0]["chunks"] = ["../../../../etc/passwd"]
    path.write_text(json.dumps(sealed.seal(doc)))  # sealed again: only the reader's rules stop it
    code, err = export(main, repo, "vol", tmp_path / "vol.img")
    assert code == ExitCode.INTEGRITY == 10
    assert "chunk ids" in one_line_error(err)


def test_a_folder_that_is_not_a_repository_exits_15(main: Main, tmp_path: Path) -> None:
    src = tmp_path / "vol.raw"
    src.write_bytes(b"x")
    folder = tmp_path / "plain"
    folder.mkdir()
    code, _out, err = main("image", "store", str(src), "--dest", str(folder), "--name", "v")
    assert code == ExitCode.NOT_A_REPOSITORY == 15
    assert "vmsnap init" in one_line_error(err)
    code, _out, err = main("export", "--dest", str(tmp_path / "nowhere"), "v", "-o", "-")
    assert code == ExitCode.DESTINATION == 9  # missing altogether, as for every command
    assert "vmsnap init" in one_line_error(err)


def test_a_newer_repository_version_exits_16(main: Main, repo: Path, tmp_path: Path) -> None:
    config = json.loads((repo / "config").read_text())
    (repo / "config").write_text(json.dumps({**config, "version": 4}))
    code, _out, err = main("export", "--dest", str(repo), "v", "-o", str(tmp_path / "x"))
    assert code == ExitCode.REPOSITORY_VERSION == 16
    assert "newer" in one_line_error(err)


def test_init_refuses_a_folder_in_use(main: Main, repo: Path, tmp_path: Path) -> None:
    code, _out, err = main("init", "--dest", str(repo))
    assert code == ExitCode.EXISTS == 14
    assert "already" in one_line_error(err)
    full = tmp_path / "full"
    full.mkdir()
    (full / "precious").write_text("x")
    code, _out, err = main("init", "--dest", str(full))
    assert code == ExitCode.DESTINATION
    assert "not empty" in one_line_error(err)
    assert sorted(p.name for p in full.iterdir()) == ["precious"]


def test_export_finds_by_name_time_and_disk(main: Main, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "vol.raw"
    write_volume(src, [chunk_data(1)])
    store(main, repo, src, "vol")
    assert export(main, repo, "other", tmp_path / "a")[0] == ExitCode.NOT_FOUND
    assert export(main, repo, "vol", tmp_path / "b", "--at", "1999")[0] == ExitCode.NOT_FOUND
    code, err = export(main, repo, "vol", tmp_path / "c", "--disk", "vdz")
    assert code == ExitCode.NOT_FOUND
    assert "no disk" in one_line_error(err)
    assert export(main, repo, "vol", tmp_path / "d", "--disk", "vol")[0] == 0


def test_at_takes_an_exact_time_before_a_prefix(main: Main, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "vol.raw"
    first = write_volume(src, [chunk_data(1)])
    store(main, repo, src, "vol")
    (stamp,) = [p.parent for p in manifests(repo)]
    second = write_volume(src, [chunk_data(2)])
    store(main, repo, src, "vol")
    later = stamp.with_name(stamp.name + "-2")  # as if both ran in the same second
    if not later.exists():
        (newer,) = [p.parent for p in manifests(repo) if p.parent != stamp]
        newer.rename(later)
    for at, data in ((stamp.name, first), (later.name, second), (stamp.name[:8], second)):
        out = tmp_path / f"{at}.img"
        assert export(main, repo, "vol", out, "--at", at)[0] == 0
        assert unzstd(out) == data


def test_export_refuses_a_terminal(repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "vol.raw"
    write_volume(src, [chunk_data(1)])
    subprocess.run(
        [VMSNAP, "-q", "image", "store", str(src), "--dest", str(repo), "--name", "vol"],
        check=True,
    )
    controller, terminal = os.openpty()
    try:
        run = subprocess.run(
            [VMSNAP, "export", "--dest", str(repo), "vol", "-o", "-"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert run.returncode == ExitCode.DESTINATION  # as image dump
    assert "terminal" in one_line_error(run.stderr)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs (root only): a disk that fills up."""
    mount = tmp_path / "small"
    mount.mkdir()
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_during_a_chunk_write_is_exit_9_and_leaves_no_backup(
    main: Main, small_fs: Path, tmp_path: Path
) -> None:
    repo = small_fs / "repo"
    assert main("init", "--dest", str(repo))[0] == 0
    src = tmp_path / "random.raw"
    src.write_bytes(random_bytes(3 * CHUNK))  # incompressible: 12 MiB will not fit in 6
    code, _out, err = main("-q", "image", "store", str(src), "--dest", str(repo), "--name", "r")
    assert code == ExitCode.DESTINATION == 9
    assert "full" in one_line_error(err)
    assert manifests(repo) == []
    assert [p.name for p in repo.rglob(".*")] == []  # no temporary object left
    for path in chunk_files(repo):
        assert len(unzstd(path)) == CHUNK


def test_export_json_errors(main: Main, repo: Path, tmp_path: Path) -> None:
    code, out, _err = main(
        "export", "--dest", str(repo), "vol", "-o", str(tmp_path / "x"), "--json"
    )
    assert code == ExitCode.NOT_FOUND
    assert json.loads(out)["exit_code"] == 3
    code, out, _err = main("export", "--dest", str(repo), "vol", "-o", "-", "--json")
    assert code == ExitCode.NOT_FOUND
    assert out == ""  # stdout is the image's: no error document there
