"""``vmsnap image dump|load`` on regular files and pipes, checked with the
real zstd CLI, and interrupted by real signals."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import VMSNAP, Main, no_traceback, one_line_error, vmsnap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from unitkit import chunk_sha256

from vmsnap.errors import ExitCode

MiB = 1 << 20


def pattern(size: int) -> bytes:
    """Deterministic data: hash noise with runs of zeros and text."""
    out = bytearray()
    n = 0
    while len(out) < size:
        out += hashlib.sha256(str(n).encode()).digest() * 3 + bytes(400) + b"vmsnap " * 20
        n += 1
    return bytes(out[:size])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src.raw"
    path.write_bytes(pattern(5 * MiB + 12345))
    return path


@pytest.fixture
def img(tmp_path: Path, src: Path) -> Path:
    path = tmp_path / "src.img.zst"
    subprocess.run(["zstd", "-q", "--content-size", str(src), "-o", str(path)], check=True)
    return path


def test_dump_and_load_round_trip(main: Main, src: Path, tmp_path: Path) -> None:
    data = src.read_bytes()
    out, new = tmp_path / "out.zst", tmp_path / "new.raw"

    code, stdout, err = main("image", "dump", "--no-progress", "--json", str(src), str(out))
    assert code == 0, err
    dumped = json.loads(stdout)
    assert dumped == {
        "size": len(data),
        "chunk_sha256": chunk_sha256(data),
        "compressed_size": out.stat().st_size,
    }
    assert subprocess.run(["zstd", "-dc", str(out)], capture_output=True, check=True).stdout == data
    assert mode(out) == 0o600

    code, stdout, err = main("image", "load", "--no-progress", "--json", str(out), str(new))
    assert code == 0, err
    loaded = json.loads(stdout)
    assert loaded == dumped
    assert sha256(new.read_bytes()) == sha256(data)
    assert mode(new) == 0o600
    assert leftovers(tmp_path) == []


def test_load_an_image_written_by_zstd(main: Main, img: Path, src: Path, tmp_path: Path) -> None:
    new = tmp_path / "new.raw"
    code, _out, err = main("image", "load", "--no-progress", str(img), str(new))
    assert code == 0, err
    assert new.read_bytes() == src.read_bytes()


def test_dump_refuses_an_existing_output(main: Main, src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.zst"
    out.write_bytes(b"precious")
    code, stdout, err = main("image", "dump", "--no-progress", str(src), str(out))
    assert code == ExitCode.DESTINATION == 9
    assert stdout == ""
    assert "exists" in one_line_error(err)
    assert out.read_bytes() == b"precious"
    assert leftovers(tmp_path) == []


def test_dump_refusal_is_one_line_with_default_progress(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.zst"
    out.write_bytes(b"precious")
    run = vmsnap("image", "dump", str(src), str(out))  # stderr is a pipe: plain progress
    assert run.returncode == 9
    one_line_error(run.stderr)


def test_dump_refuses_a_symlink_output(main: Main, src: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    out = tmp_path / "out.zst"
    out.symlink_to(target)
    code, _stdout, err = main("image", "dump", "--no-progress", str(src), str(out))
    assert code == 9
    one_line_error(err)
    assert not target.exists()


def test_dump_and_load_through_pipes(src: Path) -> None:
    data = src.read_bytes()
    dump = vmsnap("image", "dump", "--no-progress", "-", "-", stdin=data)
    assert dump.returncode == 0, dump.stderr
    no_traceback(dump.stderr)
    unzstd = subprocess.run(["zstd", "-dc"], input=dump.stdout, capture_output=True, check=True)
    assert unzstd.stdout == data

    load = vmsnap("image", "load", "--no-progress", "-", "-", stdin=dump.stdout)
    assert load.returncode == 0, load.stderr
    assert load.stdout == data


def test_dump_pipe_between_two_processes(src: Path, tmp_path: Path) -> None:
    """`vmsnap image dump - - < SRC | zstd -dc` as a shell would run it."""
    with src.open("rb") as stdin:
        dump = subprocess.Popen(
            [VMSNAP, "image", "dump", "--no-progress", "-", "-"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert dump.stdout is not None
        unzstd = subprocess.run(
            ["zstd", "-dc"], stdin=dump.stdout, capture_output=True, timeout=60, check=False
        )
        dump.stdout.close()
        _, err = dump.communicate(timeout=60)
    assert dump.returncode == 0, err
    assert unzstd.returncode == 0
    assert unzstd.stdout == src.read_bytes()


def test_load_corrupt_image(img: Path, tmp_path: Path) -> None:
    raw = bytearray(img.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    bad = tmp_path / "bad.zst"
    bad.write_bytes(bytes(raw))
    new = tmp_path / "new.raw"
    run = vmsnap("image", "load", "--no-progress", str(bad), str(new))
    assert run.returncode == ExitCode.INTEGRITY == 10
    one_line_error(run.stderr)
    assert not new.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_load_truncated_image(main: Main, img: Path, tmp_path: Path) -> None:
    raw = img.read_bytes()
    cut = tmp_path / "cut.zst"
    cut.write_bytes(raw[: len(raw) // 2])
    code, _out, err = main("image", "load", "--no-progress", str(cut), str(tmp_path / "new"))
    assert code == 10
    assert "truncated" in one_line_error(err)
    assert not (tmp_path / "new").exists()


def test_load_something_that_is_not_an_image(main: Main, src: Path, tmp_path: Path) -> None:
    code, _out, err = main("image", "load", "--no-progress", str(src), str(tmp_path / "new"))
    assert code == 10
    one_line_error(err)
    assert not (tmp_path / "new").exists()


def test_load_truncated_image_from_a_pipe_dump(src: Path, tmp_path: Path) -> None:
    dump = vmsnap("image", "dump", "--no-progress", "-", "-", stdin=src.read_bytes())
    assert dump.returncode == 0
    cut = tmp_path / "cut.zst"
    cut.write_bytes(dump.stdout[: len(dump.stdout) // 2])
    zstd_t = subprocess.run(["zstd", "-t", "-q", str(cut)], capture_output=True, check=False)
    assert zstd_t.returncode != 0
    run = vmsnap("image", "load", "--no-progress", str(cut), str(tmp_path / "new"))
    assert run.returncode == 10


def test_load_empty_image(tmp_path: Path) -> None:
    empty = tmp_path / "empty.zst"
    empty.write_bytes(b"")
    run = vmsnap("image", "load", "--no-progress", str(empty), str(tmp_path / "new"))
    assert run.returncode == 10


def test_load_missing_image(tmp_path: Path) -> None:
    run = vmsnap(
        "image", "load", "--no-progress", str(tmp_path / "missing.zst"), str(tmp_path / "n")
    )
    assert run.returncode == ExitCode.NOT_FOUND == 3
    assert "missing.zst" in one_line_error(run.stderr)
    assert not (tmp_path / "n").exists()


def test_dump_missing_source(main: Main, tmp_path: Path) -> None:
    code, _out, err = main(
        "image", "dump", "--no-progress", str(tmp_path / "nosuch"), str(tmp_path / "o")
    )
    assert code == 3
    one_line_error(err)


def test_load_over_an_existing_file_needs_force(
    main: Main, img: Path, src: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target.raw"
    target.write_bytes(b"old contents that are longer than nothing")
    code, _out, err = main("image", "load", "--no-progress", str(img), str(target))
    assert code == 9
    assert "--force" in one_line_error(err)
    assert target.read_bytes().startswith(b"old contents")

    code, _out, err = main("image", "load", "--no-progress", "--force", str(img), str(target))
    assert code == 0, err
    assert target.read_bytes() == src.read_bytes()


def test_load_onto_a_directory(img: Path, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    run = vmsnap("image", "load", "--no-progress", str(img), str(folder))
    assert run.returncode == 9
    one_line_error(run.stderr)


def test_dump_of_a_file_that_is_longer_than_its_size(tmp_path: Path) -> None:
    run = vmsnap("image", "dump", "--no-progress", "/proc/self/status", str(tmp_path / "o.zst"))
    assert run.returncode in (0, ExitCode.INTEGRITY)
    no_traceback(run.stderr)


# ---------------------------------------------------------------- signals


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)]
)
def test_signal_mid_stream_exits_128_plus_signal_and_leaves_nothing(
    tmp_path: Path, signum: signal.Signals, status: int
) -> None:
    out = tmp_path / "zero.zst"
    proc = subprocess.Popen(
        [VMSNAP, "image", "dump", "--no-progress", "/dev/zero", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_writing(proc, tmp_path)
    proc.send_signal(signum)
    _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == status
    assert one_line_error(stderr) == f"vmsnap: error: interrupted by {signum.name}"
    assert not out.exists()
    assert leftovers(tmp_path) == []


def wait_for_writing(proc: subprocess.Popen[bytes], folder: Path) -> Path:
    """Until ``proc`` has written into a partial file in ``folder``; that file."""
    deadline = time.monotonic() + 20
    while True:
        written = [p for p in folder.glob(".*.partial") if p.stat().st_size > 0]
        if written:
            return written[0]
        assert proc.poll() is None, proc.communicate()
        if time.monotonic() >= deadline:
            proc.kill()  # not left running after the test
            proc.communicate()
            pytest.fail("vmsnap never started writing")
        time.sleep(0.02)


def kill_9_while_writing(argv: list[str], folder: Path) -> Path:
    """Run ``vmsnap ARGV`` and SIGKILL it once it writes; the partial it leaves."""
    proc = subprocess.Popen([VMSNAP, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = wait_for_writing(proc, folder)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert partial.exists()
    return partial


def test_a_partial_left_by_kill_9_blocks_no_later_dump(
    main: Main, src: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.zst"
    kill_9_while_writing(["image", "dump", "--no-progress", "/dev/zero", str(out)], tmp_path)
    code, _out, err = main("image", "dump", "--no-progress", str(src), str(out))
    assert code == 0, err
    assert "left by a run that died" in err
    assert subprocess.run(["zstd", "-dc", str(out)], capture_output=True, check=True).stdout == (
        src.read_bytes()
    )
    assert leftovers(tmp_path) == []


def test_a_partial_left_by_kill_9_blocks_no_later_load(
    main: Main, img: Path, src: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.zst"
    out = tmp_path / "out.raw"
    dumped = vmsnap("image", "dump", "--no-progress", "-", str(big), stdin=pattern(64 * MiB))
    assert dumped.returncode == 0, dumped.stderr
    kill_9_while_writing(["image", "load", "--no-progress", str(big), str(out)], tmp_path)
    for force in ([], ["--force"]):
        code, _out, err = main("image", "load", "--no-progress", *force, str(img), str(out))
        assert code == 0, err
        assert out.read_bytes() == src.read_bytes()
        assert leftovers(tmp_path) == []
        out.unlink()


def test_a_partial_whose_writer_holds_its_lock_is_left_alone(
    main: Main, src: Path, tmp_path: Path
) -> None:
    """A writer that is alive where this pid is not (another pid namespace,
    another host on a shared folder) still holds the partial's lock."""
    out = tmp_path / "out.zst"
    dead = subprocess.Popen(["true"])  # a pid that no longer exists
    dead.wait()
    partial = tmp_path / f".out.zst.{dead.pid}.partial"
    with partial.open("wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        code, _out, err = main("image", "dump", "--no-progress", str(src), str(out))
        assert code == 0, err
        assert partial.exists()
    assert out.exists()


def test_load_force_keeps_the_old_file_when_the_image_is_bad(
    main: Main, img: Path, src: Path, tmp_path: Path
) -> None:
    raw = bytearray(img.read_bytes())
    raw[len(raw) * 3 // 4] ^= 0x01  # decodes a good part first, then fails
    bad = tmp_path / "bad.zst"
    bad.write_bytes(bytes(raw))
    precious = tmp_path / "precious.raw"
    old = pattern(7 * MiB)[::-1]
    precious.write_bytes(old)
    precious.chmod(0o640)
    code, _out, err = main("image", "load", "--no-progress", "--force", str(bad), str(precious))
    assert code == ExitCode.INTEGRITY
    one_line_error(err)
    assert precious.read_bytes() == old
    assert leftovers(tmp_path) == []

    code, _out, err = main("image", "load", "--no-progress", "--force", str(img), str(precious))
    assert code == 0, err
    assert precious.read_bytes() == src.read_bytes()
    assert mode(precious) == 0o640  # the replacement keeps the mode of the file it replaced


def test_load_force_through_a_symlink_replaces_the_file_it_names(
    main: Main, img: Path, src: Path, tmp_path: Path
) -> None:
    real = tmp_path / "real.raw"
    real.write_bytes(b"old")
    link = tmp_path / "link.raw"
    link.symlink_to(real)
    code, _out, err = main("image", "load", "--no-progress", "--force", str(img), str(link))
    assert code == 0, err
    assert link.is_symlink()
    assert real.read_bytes() == src.read_bytes()


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    """A real block device: a loop device over an 8 MiB file."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("loop devices need root and losetup")
    backing = tmp_path / "backing.img"
    backing.write_bytes(b"disk contents " * (8 * MiB // 14) + bytes(8 * MiB % 14))
    made = subprocess.run(
        ["losetup", "--show", "-f", str(backing)], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        pytest.skip(f"losetup failed: {made.stderr.strip()}")
    device = Path(made.stdout.strip())
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", str(device)], check=True)


def test_load_onto_an_existing_block_device_needs_force(
    main: Main, img: Path, src: Path, loop_device: Path
) -> None:
    before = loop_device.read_bytes()
    code, _out, err = main("image", "load", "--no-progress", str(img), str(loop_device))
    assert code == ExitCode.DESTINATION
    assert "--force" in one_line_error(err)
    assert loop_device.read_bytes() == before

    code, _out, err = main("image", "load", "--no-progress", "--force", str(img), str(loop_device))
    assert code == 0, err
    data = src.read_bytes()
    assert loop_device.read_bytes()[: len(data)] == data


def test_dump_to_a_terminal_is_refused(src: Path) -> None:
    """Like zstd: a binary image on a terminal only garbles it."""
    master, slave = pty.openpty()
    try:
        run = subprocess.run(
            [VMSNAP, "image", "dump", "--no-progress", str(src), "-"],
            stdout=slave,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
        os.set_blocking(master, False)
        try:
            shown = os.read(master, 1 << 16)
        except BlockingIOError:
            shown = b""
    finally:
        os.close(slave)
        os.close(master)
    assert run.returncode == ExitCode.DESTINATION
    assert "terminal" in one_line_error(run.stderr)
    assert shown == b""
