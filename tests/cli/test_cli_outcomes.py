"""How outcomes combine and reach the user: backup --prune's two outcomes,
cleanup --json with a guest it could not release, error lines in the log file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from clikit import Main, one_line_error
from goldenkit import GUEST_RESULTS

from vmsnap import backup, retention
from vmsnap.errors import ExitCode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from backupkit import flip_bit, make_backup


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

    def prune(_dest: Path, names: list[str], *_a: object, **_k: object) -> list:
        return [retention.GuestPrune(names[0], dest / names[0], errors=["cannot remove X: EIO"])]

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
    flip_bit(bad / "vda.img.zst", 60)
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
    flip_bit(newest / "vda.img.zst", 60)
    main("verify", "--no-progress", str(newest))  # the newest is now known bad
    code, out, _err = main("backups", "--dest", str(dest), "--json")
    assert code == 0
    [guest] = json.loads(out)
    assert guest["backups"][0]["age_seconds"] is not None  # the bad one's own age
    assert guest["newest_good"] == "20261101T020000Z"
    assert guest["newest_good_age_seconds"] == guest["backups"][1]["age_seconds"]
