"""Files written aside and renamed into place: which partials a new run may
remove (only those whose writer is gone), and what an error leaves."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from vmsnap import aside


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_only_partials_of_that_name_whose_writer_is_gone_are_swept(tmp_path: Path) -> None:
    out = tmp_path / "out.img"
    with subprocess.Popen(["sleep", "60"]) as alive:
        try:
            names = {
                "stale": aside.partial_name(out, dead_pid()),
                "mine": aside.partial_name(out),  # a pid reused: not ours yet
                "alive": aside.partial_name(out, alive.pid),
                "other": aside.partial_name(tmp_path / "other.img", dead_pid()),
                "legacy": tmp_path / ".out.img.partial",
                "odd": tmp_path / ".out.img.12x.partial",
            }
            for path in names.values():
                path.write_bytes(b"x")
            assert sorted(aside.sweep(out)) == sorted([names["stale"], names["mine"]])
        finally:
            alive.kill()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(names[k].name for k in ("alive", "other", "legacy", "odd"))


def test_a_locked_partial_is_never_swept(tmp_path: Path) -> None:
    out = tmp_path / "out.img"
    partial = aside.partial_name(out, dead_pid())
    with partial.open("wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert aside.sweep(out) == []
    assert aside.sweep(out) == [partial]


def write_then_interrupt(out: Path) -> None:
    with aside.written_aside(out, replace=out.stat()) as new:
        new.write(b"new and half")
        raise KeyboardInterrupt


def test_an_error_leaves_nothing_and_the_old_file_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out.img"
    out.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        write_then_interrupt(out)
    assert os.listdir(tmp_path) == ["out.img"]
    assert out.read_bytes() == b"old"


def test_a_new_file_is_0600_and_published_whole(tmp_path: Path) -> None:
    out = tmp_path / "out.img"
    with aside.written_aside(out) as new:
        new.write(b"data")
        assert not out.exists()
    assert out.read_bytes() == b"data"
    assert out.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["out.img"]
