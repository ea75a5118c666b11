"""The command line itself: version, help with its EXIT STATUS section, usage
errors, and --debug."""

from __future__ import annotations

import pytest
from clikit import Main, vmsnap

from vmsnap import __version__
from vmsnap.errors import ExitCode


def test_version(main: Main) -> None:
    assert main("--version") == (0, f"vmsnap {__version__}\n", "")


def test_version_as_a_process() -> None:
    run = vmsnap("--version")
    assert (run.returncode, run.stdout, run.stderr) == (0, f"vmsnap {__version__}\n".encode(), b"")


@pytest.mark.parametrize(
    "command",
    [
        [],
        pytest.param(
            ["list"],
        ),
        ["backup"],
        ["image"],
        ["image", "dump"],
        ["image", "load"],
    ],
)
def test_help_ends_with_the_exit_status_section(main: Main, command: list[str]) -> None:
    code, out, _err = main(*command, "--help")
    assert code == 0
    assert "EXIT STATUS" in out
    section = out[out.index("EXIT STATUS") :]
    for exit_code in ExitCode:
        if exit_code is not ExitCode.INTERRUPTED:
            assert f" {int(exit_code)} " in section, exit_code
    assert "129/130/143" in section


def test_help_as_a_process() -> None:
    run = vmsnap("--help")
    assert run.returncode == 0
    assert b"EXIT STATUS" in run.stdout
    assert b"Traceback" not in run.stderr


def test_unknown_command_is_a_usage_error() -> None:
    run = vmsnap("frobnicate")
    assert run.returncode == 2
    assert b"Traceback" not in run.stderr


def test_debug_adds_the_traceback(main: Main, uri: str) -> None:
    code, _out, err = main("--debug", "list", "nosuch", "--connect", uri)
    assert code == 3
    assert err.startswith("vmsnap: error: no guest named 'nosuch'")
    assert "Traceback" in err
    code, _out, err = main("list", "nosuch", "--connect", uri)
    assert code == 3
    assert "Traceback" not in err
