"""The exit-status contract: every status vmsnap documents is reached by at
least one test, named here (host tests where the host can reach it; the lab and
the agent tier for the LVM and guest-agent ones), and each named test exists
and checks that status."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
from clikit import Main, one_line_error
from test_cli_manpage import COMMANDS

from vmsnap import catalog
from vmsnap.errors import ExitCode

TESTS = Path(__file__).resolve().parents[1]

REACHED_BY: dict[ExitCode, list[str]] = {
    ExitCode.OK: ["cli/test_cli_prune.py::test_prune_keep_last"],
    ExitCode.PARTIAL: ["lab/test_lab_faults.py::test_one_failing_guest_does_not_stop_the_others"],
    ExitCode.USAGE: [
        "cli/test_cli_backup.py::test_neither_domain_nor_all",
        "cli/test_cli_prune.py::test_a_bad_config_file_is_one_usage_error",
    ],
    ExitCode.NOT_FOUND: ["cli/test_cli_list.py::test_list_unknown_guest"],
    ExitCode.UNSUPPORTED_DISK: ["cli/test_cli_backup.py::test_disk_that_is_not_an_lv"],
    ExitCode.NO_SPACE: [
        "lab/test_lab_faults.py::test_vg_without_room_is_refused_up_front",
        "lab/test_lab_guard.py::test_thin_pool_near_full_is_refused_before_snapshotting",
    ],
    ExitCode.LVM: ["cli/test_cli_backup.py::test_backup_without_lvm_tools"],
    ExitCode.LIBVIRT: ["cli/test_cli_list.py::test_cannot_connect"],
    ExitCode.QUIESCE: [
        "agent/test_agent_freeze.py::test_freeze_without_an_agent_fails_and_the_guest_keeps_running"
    ],
    ExitCode.DESTINATION: ["cli/test_cli_backup.py::test_missing_destination"],
    ExitCode.INTEGRITY: [
        "cli/test_cli_restore_clone.py::test_verify_ok_then_corrupt",
        "cli/test_cli_prune.py::test_verify_a_corrupt_chunk_names_every_backup_using_it",
    ],
    ExitCode.LOCKED: ["cli/test_cli_prune.py::test_prune_waits_for_the_run_lock"],
    ExitCode.LEFT_BEHIND: [
        "cli/test_cli_exit_contract.py::test_cleanup_that_cannot_release_a_guest_exits_12",
        "agent/test_agent_freeze.py::"
        "test_an_agent_hung_past_the_thaw_leaves_a_journal_that_cleanup_acts_on",
    ],
    ExitCode.HOOK: ["lab/test_lab_hooks.py::test_backup_hooks_in_order_and_a_veto_leaves_nothing"],
    ExitCode.EXISTS: [
        "cli/test_cli_restore_clone.py::test_clone_onto_an_existing_guest_name_exits_14",
        "cli/test_cli_restore_clone.py::test_restore_onto_a_taken_lv_name_exits_14",
        "lab/test_lab_clone.py::test_clone_refuses_before_creating_anything",
    ],
    ExitCode.NOT_A_REPOSITORY: [
        "cli/test_cli_repo.py::test_a_folder_that_is_not_a_repository_exits_15"
    ],
    ExitCode.REPOSITORY_VERSION: ["cli/test_cli_repo.py::test_a_newer_repository_version_exits_16"],
    ExitCode.MISSING_DATA: [
        "cli/test_cli_repo.py::test_a_missing_chunk_is_one_line_and_exit_17",
        "cli/test_cli_prune.py::test_verify_a_missing_chunk_is_17_and_a_corrupt_one_wins",
    ],
    ExitCode.ACCESS_DENIED: [
        "cli/test_cli_locks.py::test_no_credentials_for_the_object_store_exits_18"
    ],
    ExitCode.UNREACHABLE: [
        "cli/test_cli_locks.py::test_an_object_store_that_does_not_answer_exits_19"
    ],
    ExitCode.INTERNAL: ["cli/test_cli_exit_contract.py::test_an_unexpected_exception_exits_70"],
    ExitCode.INTERRUPTED: [  # 130, and 143 and 129 in the same test
        "cli/test_cli_image.py::test_signal_mid_stream_exits_128_plus_signal_and_leaves_nothing"
    ],
}


def source_of(test_id: str) -> str:
    """The test function's source, decorators included; fails if there is none."""
    path, _sep, name = test_id.partition("::")
    text = (TESTS / path).read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "\n".join(text.splitlines()[first - 1 : node.end_lineno])
    raise AssertionError(f"{test_id}: no such test")


def test_every_exit_status_has_a_test() -> None:
    assert set(REACHED_BY) == set(ExitCode)


@pytest.mark.parametrize(
    ("code", "test_id"),
    [(c, t) for c, ids in REACHED_BY.items() for t in ids],
    ids=[f"{c.name}-{t.rpartition('::')[2]}" for c, ids in REACHED_BY.items() for t in ids],
)
def test_the_named_test_exists_and_checks_the_status(code: ExitCode, test_id: str) -> None:
    text = source_of(test_id)
    numbers = {ExitCode.INTERRUPTED: ("130", "143", "129")}.get(code, (f"== {int(code)}",))
    assert f"ExitCode.{code.name}" in text or any(n in text for n in numbers), test_id


@pytest.mark.parametrize("name", [n for n, _c in COMMANDS])
def test_every_commands_help_lists_every_exit_status(main: Main, name: str) -> None:
    code, out, _err = main(*name.split(), "--help")
    assert code == 0
    section = out[out.index("EXIT STATUS") :]
    for exit_code in ExitCode:
        if exit_code is not ExitCode.INTERRUPTED:
            assert f" {int(exit_code)} " in section, exit_code
    assert "129/130/143" in section


# ---------------------------------------------------------------- host tests of the rarer ones


@pytest.mark.usefixtures("host_lvm_empty")
def test_cleanup_that_cannot_release_a_guest_exits_12(main: Main, tmp_path: Path) -> None:
    state = Path(os.environ["VMSNAP_STATE_DIR"])
    state.mkdir(mode=0o700)
    gone = f"test://{tmp_path}/no-such-node.xml"  # the host the run paused it on is unreachable
    entry = {"uri": gone, "name": "ghost", "uuid": "0" * 32, "action": "pause"}
    (state / "journal.json").write_text(json.dumps({"pid": 1, "started": 0, "guests": [entry]}))
    code, _out, err = main("cleanup")
    assert code == ExitCode.LEFT_BEHIND == 12
    assert "ghost" in err
    assert (state / "journal.json").exists()  # kept, to try again


def test_an_unexpected_exception_exits_70(
    main: Main, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(catalog, "scan", broken)
    code, out, err = main("backups", "--dest", str(dest))
    assert code == ExitCode.INTERNAL == 70
    assert out == ""
    assert one_line_error(err) == "vmsnap: error: a bug"
