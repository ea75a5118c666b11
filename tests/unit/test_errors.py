"""The exit-status contract: error classes, their codes, and how a backup's
per-guest results become one exit status."""

from __future__ import annotations

import signal

import pytest

from vmsnap import errors
from vmsnap.backup import GuestResult
from vmsnap.backup import exit_code as backup_exit_code
from vmsnap.cli.app import EXIT_STATUS
from vmsnap.errors import (
    CommandError,
    DestinationError,
    ExitCode,
    Interrupted,
    LeftBehindError,
    NoSpaceError,
    UnsupportedDiskError,
    VmsnapError,
    worst,
)

ERROR_CLASSES = {
    errors.UsageError: ExitCode.USAGE,
    errors.NotFoundError: ExitCode.NOT_FOUND,
    errors.UnsupportedDiskError: ExitCode.UNSUPPORTED_DISK,
    errors.NoSpaceError: ExitCode.NO_SPACE,
    errors.LvmError: ExitCode.LVM,
    errors.LibvirtError: ExitCode.LIBVIRT,
    errors.QuiesceError: ExitCode.QUIESCE,
    errors.DestinationError: ExitCode.DESTINATION,
    errors.IntegrityError: ExitCode.INTEGRITY,
    errors.LockedError: ExitCode.LOCKED,
    errors.LeftBehindError: ExitCode.LEFT_BEHIND,
    errors.HookError: ExitCode.HOOK,
    errors.ExistsError: ExitCode.EXISTS,
    errors.NotARepositoryError: ExitCode.NOT_A_REPOSITORY,
    errors.RepositoryVersionError: ExitCode.REPOSITORY_VERSION,
}


def test_exit_codes_are_distinct_and_fixed() -> None:
    values = [int(c) for c in ExitCode]
    assert len(values) == len(set(values))
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "PARTIAL": 1,
        "USAGE": 2,
        "NOT_FOUND": 3,
        "UNSUPPORTED_DISK": 4,
        "NO_SPACE": 5,
        "LVM": 6,
        "LIBVIRT": 7,
        "QUIESCE": 8,
        "DESTINATION": 9,
        "INTEGRITY": 10,
        "LOCKED": 11,
        "LEFT_BEHIND": 12,
        "HOOK": 13,
        "EXISTS": 14,
        "NOT_A_REPOSITORY": 15,
        "REPOSITORY_VERSION": 16,
        "MISSING_DATA": 17,
        "ACCESS_DENIED": 18,
        "UNREACHABLE": 19,
        "INTERNAL": 70,
        "INTERRUPTED": 130,
    }


def test_every_code_is_documented_in_the_help() -> None:
    for code in ExitCode:
        if code is not ExitCode.INTERRUPTED:
            assert f"\n  {int(code):>2}   " in EXIT_STATUS, code
    assert "129/130/143" in EXIT_STATUS


@pytest.mark.parametrize(("cls", "code"), list(ERROR_CLASSES.items()))
def test_each_error_class_carries_its_code(cls: type[VmsnapError], code: ExitCode) -> None:
    assert cls("x").exit_code == code
    assert issubclass(cls, VmsnapError)


def test_error_codes_are_one_to_one() -> None:
    assert len(set(ERROR_CLASSES.values())) == len(ERROR_CLASSES)
    assert VmsnapError("x").exit_code == ExitCode.INTERNAL


def test_message_and_hint() -> None:
    assert str(VmsnapError("it broke")) == "it broke"
    err = NoSpaceError("vg0 is full", hint="free some space")
    assert str(err) == "vg0 is full (free some space)"
    assert (err.message, err.hint) == ("vg0 is full", "free some space")


def test_command_error_keeps_the_last_line_of_stderr() -> None:
    err = CommandError(["lvcreate", "-s"], 5, '  WARNING: x\n  Volume group "vg0" not found  \n\n')
    assert str(err) == 'lvcreate failed with status 5: Volume group "vg0" not found'
    assert err.exit_code == ExitCode.LVM
    assert (err.argv, err.returncode) == (["lvcreate", "-s"], 5)
    assert str(CommandError(["lvs"], 1, "")) == "lvs failed with status 1: no message"


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_interrupted(signum: signal.Signals, status: int) -> None:
    err = Interrupted(signum)
    assert err.signum == signum
    assert str(err) == f"interrupted by {signum.name}"
    assert 128 + err.signum == status  # what cli.main returns for it


# ---------------------------------------------------------------- backup_exit_code


def ok(name: str) -> GuestResult:
    return GuestResult(name=name)


def failed(name: str, error: VmsnapError) -> GuestResult:
    return GuestResult(name=name, error=error)


def test_all_ok_is_0() -> None:
    assert backup_exit_code([ok("a"), ok("b")]) == ExitCode.OK
    assert backup_exit_code([]) == ExitCode.OK


def test_some_failed_is_1() -> None:
    results = [ok("a"), failed("b", NoSpaceError("x")), ok("c")]
    assert backup_exit_code(results) == ExitCode.PARTIAL


def test_all_failed_is_the_first_error() -> None:
    results = [failed("a", NoSpaceError("x")), failed("b", UnsupportedDiskError("y"))]
    assert backup_exit_code(results) == ExitCode.NO_SPACE
    assert backup_exit_code([failed("a", DestinationError("z"))]) == ExitCode.DESTINATION


@pytest.mark.parametrize(
    "results",
    [
        [failed("a", LeftBehindError("snapshot"))],
        [ok("a"), failed("b", LeftBehindError("snapshot"))],
        [failed("a", NoSpaceError("x")), failed("b", LeftBehindError("paused"))],
        [failed("a", LeftBehindError("paused")), ok("b"), failed("c", NoSpaceError("x"))],
    ],
)
def test_left_behind_anywhere_is_12(results: list[GuestResult]) -> None:
    assert backup_exit_code(results) == ExitCode.LEFT_BEHIND


# ---------------------------------------------------------------- worst


def test_worst_of_nothing_is_success() -> None:
    assert worst() == ExitCode.OK
    assert worst(ExitCode.OK, ExitCode.OK) == ExitCode.OK


def test_worst_ranks_error_over_partial_over_success() -> None:
    assert worst(ExitCode.OK, ExitCode.PARTIAL) == ExitCode.PARTIAL
    assert worst(ExitCode.PARTIAL, ExitCode.DESTINATION) == ExitCode.DESTINATION
    assert worst(ExitCode.DESTINATION, ExitCode.OK) == ExitCode.DESTINATION


def test_worst_ranks_left_behind_then_internal_highest() -> None:
    assert worst(ExitCode.NO_SPACE, ExitCode.LEFT_BEHIND) == ExitCode.LEFT_BEHIND
    assert worst(ExitCode.LEFT_BEHIND, ExitCode.INTERNAL, ExitCode.OK) == ExitCode.INTERNAL


def test_worst_between_equals_is_the_first() -> None:
    assert worst(ExitCode.NO_SPACE, ExitCode.DESTINATION) == ExitCode.NO_SPACE
    assert worst(ExitCode.DESTINATION, ExitCode.NO_SPACE) == ExitCode.DESTINATION


def test_every_code_has_a_meaning_for_the_help() -> None:
    assert set(errors.EXIT_MEANINGS) == set(ExitCode)
    for code, meaning in errors.EXIT_MEANINGS.items():
        assert meaning in EXIT_STATUS, code
