"""What ``-v``, ``-vv`` and ``--log-file`` record: each step of a job, and every
command run.  The LVM tools are the stand-ins of fakelvm.py, run as real
processes through vmsnap's runner; libvirt is its test driver."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from clikit import Main
from fakelvm import volume

HERE = Path(__file__).parent
MiB = 1 << 20
TOOLS = ("lvs", "vgs", "lvcreate", "lvremove")


@pytest.fixture
def fake_lvm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """vg0/web01-root (64 MiB) behind fake LVM tools first on PATH; the state file."""
    state = tmp_path / "lvm.json"
    state.write_text(json.dumps([volume("web01-root", 64 * MiB)]))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "fakelvm"
    script.write_text(f"#!{sys.executable}\n" + (HERE / "fakelvm.py").read_text())
    script.chmod(0o755)
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(script)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LVM_STATE", str(state))
    return state


def backup(main: Main, uri: str, dest: Path, log: Path, *verbosity: str) -> str:
    """A backup of web01 that fails reading its snapshot (the fake has no device)."""
    code, _out, err = main(
        *verbosity, "--log-file", str(log), "backup", "web01", "--dest", str(dest),
        "--connect", uri, "--quiesce", "pause", "--no-progress",
    )  # fmt: skip
    assert code == 10, err
    return log.read_text()


COMMAND = r"lvcreate --snapshot --name (web01-root-vmsnap-\w+) .*--size 16777216b -- vg0/web01-root"


def test_vv_logs_every_command_and_each_step_in_the_log_file(
    main: Main, uri: str, dest: Path, tmp_path: Path, fake_lvm: Path
) -> None:
    text = backup(main, uri, dest, tmp_path / "vmsnap.log", "-vv")
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d vmsnap "
    assert re.search(
        stamp + r"DEBUG: lvs --reportformat json .*: status 0 in \d+\.\d\d s$", text, re.M
    )
    assert re.search(stamp + r"DEBUG: vgs --reportformat json .* -- vg0: status 0 in ", text, re.M)
    created = re.search(stamp + "VERBOSE: " + COMMAND + r": status 0 in \d+\.\d\d s$", text, re.M)
    assert created, text
    snap = created.group(1)
    assert f"VERBOSE: snapshot vg0/{snap} of vg0/web01-root taken (16.0 MiB of COW space)" in text
    assert "VERBOSE: paused web01\n" in text
    assert "VERBOSE: resumed web01\n" in text
    assert f"VERBOSE: lvremove --force --yes -- vg0/{snap}: status 0 in " in text
    assert f"ERROR: web01: cannot open snapshot vg0/{snap}: No such file or directory" in text
    order = [text.index(s) for s in ("paused", "lvcreate", "resumed", "lvremove", "ERROR")]
    assert order == sorted(order)


def test_v_logs_the_steps_but_not_the_queries(
    main: Main, uri: str, dest: Path, tmp_path: Path, fake_lvm: Path
) -> None:
    text = backup(main, uri, dest, tmp_path / "vmsnap.log", "-v")
    assert re.search("VERBOSE: " + COMMAND, text)
    assert "VERBOSE: paused web01" in text
    assert " DEBUG: " not in text
    assert "lvs --reportformat" not in text


def test_without_v_the_log_file_has_no_steps(
    main: Main, uri: str, dest: Path, tmp_path: Path, fake_lvm: Path
) -> None:
    text = backup(main, uri, dest, tmp_path / "vmsnap.log")
    assert "lvcreate" not in text
    assert "VERBOSE" not in text
    assert "ERROR: web01: cannot open snapshot" in text


def test_v_logs_each_streams_size_time_and_rate(main: Main, tmp_path: Path) -> None:
    src = tmp_path / "src.raw"
    src.write_bytes(os.urandom(3 * MiB))
    log = tmp_path / "vmsnap.log"
    out = tmp_path / "out.zst"
    code, _out, err = main(
        "-v", "--log-file", str(log), "image", "dump", "--no-progress", str(src), str(out)
    )
    assert code == 0, err
    line = rf"VERBOSE: {re.escape(str(src))}: 3\.0 MiB in \d+\.\d s \(\d+(\.\d)? [KMG]iB/s\)$"
    assert re.search(line, log.read_text(), re.M), log.read_text()
    assert re.search(line, err, re.M)
