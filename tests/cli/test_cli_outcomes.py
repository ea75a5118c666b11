"""How outcomes combine and reach the user: backup --prune's two outcomes,
cleanup --json with a guest it could not release, error lines in the log file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer.main
from clikit import VMSNAP, Main, one_line_error, vmsnap
from goldenkit import GUEST_RESULTS
from test_cli_manpage import COMMANDS

from vmsnap import backup, image, lock, retention
from vmsnap.cli import app
from vmsnap.cli.params import hoist_globals
from vmsnap.errors import ExitCode, IntegrityError, TruncatedError
from vmsnap.image import StreamStats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from backupkit import chunk_path, flip_bit, make_backup


@pytest.fixture
def policy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vmsnap.toml"
    path.write_text("[retention]\nkeep_last = 1\n")
    monkeypatch.setenv("VMSNAP_CONFIG", str(path))


@pytest.mark.usefixtures("policy_file")
def test_backup_prune_errors_are_said_when_a_backup_failed(
    main: Main, uri: str, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_backup(dest, "web01", "20261101T020000Z")
    monkeypatch.setattr(backup, "backup", lambda *_a: GUEST_RESULTS(dest))  # web02 failed

    def prune(_repo: object, names: list[str], *_a: object, **_k: object) -> retention.PruneRun:
        plan = retention.GuestPrune(names[0], str(dest / names[0]), errors=["cannot remove X: EIO"])
        return retention.PruneRun([plan], None)

    monkeypatch.setattr(retention, "prune", prune)
    code, _out, err = main("backup", "--all", "--prune", "--dest", str(dest), "-c", uri)
    assert "vmsnap: error: web02: " in err
    assert "vmsnap: error: cannot remove X: EIO" in err  # was never printed
    assert code == ExitCode.DESTINATION  # worst(partial, destination)


@pytest.mark.usefixtures("host_lvm_empty")
def test_cleanup_json_that_cannot_release_a_guest_exits_12(main: Main, tmp_path: Path) -> None:
    state = Path(os.environ["VMSNAP_STATE_DIR"])
    state.mkdir(mode=0o700)
    gone = f"test://{tmp_path}/no-such-node.xml"
    entry = {"uri": gone, "name": "ghost", "uuid": "0" * 32, "action": "pause"}
    (state / "journal.json").write_text(json.dumps({"pid": 1, "started": 0, "guests": [entry]}))
    code, out, err = main("cleanup", "--json")
    assert code == ExitCode.LEFT_BEHIND  # was 70: a journal entry reached json.dumps
    doc = json.loads(out)
    assert doc["unresolved"] == [entry]
    assert "ghost" in err


def test_verify_failures_reach_the_log_file(main: Main, dest: Path, tmp_path: Path) -> None:
    bad = make_backup(dest, "web01", "20261101T020000Z")
    flip_bit(chunk_path(dest, bad), 20)
    log = tmp_path / "vmsnap.log"
    code, _out, err = main("--log-file", str(log), "verify", "--no-progress", str(dest))
    assert code == ExitCode.INTEGRITY
    said = [line for line in err.splitlines() if line.startswith("vmsnap: error: ")]
    assert said
    text = log.read_text()
    for line in said:
        assert f" vmsnap ERROR: {line.removeprefix('vmsnap: error: ')}" in text


def test_the_started_line_has_the_whole_command_line(
    main: Main, dest: Path, tmp_path: Path
) -> None:
    log = tmp_path / "vmsnap.log"
    main("--log-file", str(log), "backups", "--dest", str(dest), "web01")
    started = next(line for line in log.read_text().splitlines() if "started:" in line)
    assert started.endswith(f"started: vmsnap --log-file {log} backups --dest {dest} web01")


# ---------------------------------------------------------------- --json when a run fails


def test_a_failed_json_run_prints_an_error_document(main: Main, uri: str) -> None:
    code, out, err = main("list", "nosuch", "--connect", uri, "--json")
    assert code == ExitCode.NOT_FOUND
    doc = json.loads(out)
    assert doc["message_type"] == "exit_error"
    assert doc["exit_code"] == ExitCode.NOT_FOUND
    assert "nosuch" in doc["message"]
    assert doc["message"] in one_line_error(err)


def test_without_json_a_failed_run_prints_nothing_on_stdout(main: Main, uri: str) -> None:
    code, out, _err = main("list", "nosuch", "--connect", uri)
    assert (code, out) == (ExitCode.NOT_FOUND, "")


def test_a_usage_error_of_ours_with_json_is_a_document_too(main: Main) -> None:
    code, out, _err = main("backups", "--json")  # no --dest, no configuration file
    assert code == ExitCode.USAGE
    assert json.loads(out)["exit_code"] == ExitCode.USAGE


def test_image_to_stdout_gets_no_error_document(main: Main, tmp_path: Path) -> None:
    code, out, _err = main("image", "dump", "--json", str(tmp_path / "missing"), "-")
    assert code == ExitCode.NOT_FOUND
    assert out == ""


def test_backups_json_gives_each_guest_its_newest_good_backups_age(main: Main, dest: Path) -> None:
    make_backup(dest, "web01", "20261101T020000Z")
    newest = make_backup(dest, "web01", "20261102T020000Z")
    flip_bit(chunk_path(dest, newest), 20)
    main("verify", "--no-progress", str(newest))  # the newest is now known bad
    code, out, _err = main("backups", "--dest", str(dest), "--json")
    assert code == 0
    [guest] = json.loads(out)
    assert guest["backups"][0]["age_seconds"] is not None  # the bad one's own age
    assert guest["newest_good"] == "20261101T020000Z"
    assert guest["newest_good_age_seconds"] == guest["backups"][1]["age_seconds"]


# ---------------------------------------------------------------- a closed pipe


def closed_pipe(*args: str) -> tuple[int, bytes]:
    """Run vmsnap with its stdout a pipe nobody reads (``vmsnap ... | head``)."""
    proc = subprocess.Popen([VMSNAP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read()
    return proc.wait(timeout=60), err


def test_a_closed_stdout_pipe_is_a_quiet_141(uri: str) -> None:
    code, err = closed_pipe("list", "--connect", uri, "--json")
    assert (code, err) == (128 + signal.SIGPIPE, b"")


def test_image_dump_into_a_closed_pipe_is_a_quiet_141(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3 << 20))
    code, err = closed_pipe("image", "dump", "--no-progress", str(src), "-")
    assert (code, err) == (141, b"")  # was 9 and "cannot write -: Broken pipe"


# ---------------------------------------------------------------- help and parser words

PYTHON_TYPES = re.compile(r"<(list\[|str>|int|float|path>|Path)|\{[a-zA-Z_]+\}|\[default: 0\]")


@pytest.mark.parametrize("name", [n for n, _c in COMMANDS] + [""])
def test_help_shows_no_python_types(main: Main, name: str) -> None:
    code, out, _err = main(*name.split(), "--help")
    assert code == 0
    assert not PYTHON_TYPES.search(out), PYTHON_TYPES.findall(out)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["backup", "--level", "0", "x"], "Invalid value for '--level': must be 1 or more"),
        (["backup", "--level", "20", "x"], "Invalid value for '--level': must be 19 or less"),
        (["backup", "--level", "x", "x"], "Invalid value for '--level': not a whole number"),
        (["checkpoint", "watch", "--threshold", "x"], "'--threshold': not a number"),
        (["backup", "--quiesce", "bad", "x"], "'--quiesce': 'bad' is not one of 'auto', "),
    ],
)
def test_parser_errors_are_plain_words(args: list[str], words: str) -> None:
    run = vmsnap(*args)
    assert run.returncode == ExitCode.USAGE
    err = run.stderr.decode()
    assert words in err
    assert "Input should" not in err
    assert "Value error" not in err


# ---------------------------------------------------------------- hints that fit


@pytest.mark.usefixtures("host_lvm_empty")
def test_clone_of_a_template_with_a_non_lv_disk_suggests_no_exclude(main: Main, uri: str) -> None:
    code, _out, err = main("clone", "web01", "web09", "-c", uri)
    assert code == ExitCode.UNSUPPORTED_DISK
    line = one_line_error(err)
    assert "--exclude" not in line  # clone has no --exclude
    assert "each must be an LV" in line


def test_backup_without_guests_or_all_does_not_say_not_both(main: Main, dest: Path) -> None:
    code, _out, err = main("backup", "--dest", str(dest))
    assert code == ExitCode.USAGE
    assert one_line_error(err) == "vmsnap: error: name the guests to back up, or pass --all"


def test_an_image_too_long_is_not_called_truncated() -> None:
    stats = StreamStats(size=200, chunk_sha256="", compressed_size=1)
    with pytest.raises(IntegrityError, match=r"200 bytes, 100 expected \(too long\)$"):
        image.check(stats, expected_size=100, expected_digest=None)
    with pytest.raises(TruncatedError, match=r"\(truncated\?\)$"):
        image.check(stats, expected_size=300, expected_digest=None)


# ---------------------------------------------------------------- the lock wait


@pytest.mark.parametrize("how", ["option", "environment"])
def test_the_lock_wait_is_settable(
    main: Main, dest: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    args = ["--lock-wait", "0.3"] if how == "option" else []
    if how == "environment":
        monkeypatch.setenv("VMSNAP_LOCK_WAIT", "0.3")
    started = time.monotonic()
    with lock.run_lock(wait=0):
        code, _out, err = main(*args, "prune", "--dest", str(dest), "--keep-last", "1")
    assert code == ExitCode.LOCKED
    assert time.monotonic() - started < 10  # not the default 60 s
    assert "(waited 0 s)" in err
    assert f"pid {os.getpid()}" in err


def test_a_bad_lock_wait_in_the_environment_is_a_usage_error(
    main: Main, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMSNAP_LOCK_WAIT", "soon")
    code, _out, err = main("backups", "--dest", str(dest))
    assert code == ExitCode.USAGE
    assert "VMSNAP_LOCK_WAIT" in one_line_error(err)


# ---------------------------------------------------------------- global options anywhere


def test_global_options_after_the_subcommand(main: Main, dest: Path, tmp_path: Path) -> None:
    log = tmp_path / "vmsnap.log"
    code, out, err = main("backups", "--dest", str(dest), "-q", "--log-file", str(log))
    assert (code, err) == (0, "")
    assert out.startswith("GUEST")
    assert "started: vmsnap backups" in log.read_text()


def test_debug_after_the_subcommand_adds_the_traceback(main: Main, uri: str) -> None:
    code, _out, err = main("list", "nosuch", "--connect", uri, "--debug")
    assert code == ExitCode.NOT_FOUND
    assert "Traceback" in err


@pytest.mark.parametrize(
    ("argv", "hoisted"),
    [
        (["list", "-vv", "x"], ["-vv", "list", "x"]),
        (["-q", "image", "dump", "--config=f", "a", "b"],
         ["-q", "--config=f", "image", "dump", "a", "b"]),
        (["--config", "f", "prune", "--log-file", "l", "-c", "u"],
         ["--config", "f", "--log-file", "l", "prune", "-c", "u"]),
        (["restore", "b", "--", "-q"], ["restore", "b", "--", "-q"]),
        (["--debug"], ["--debug"]),
    ],
)  # fmt: skip
def test_hoist_globals(argv: list[str], hoisted: list[str]) -> None:
    root = typer.main.get_command(app)
    assert hoist_globals(argv, root.params) == hoisted
