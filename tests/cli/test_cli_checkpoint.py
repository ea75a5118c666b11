"""The checkpoint commands' edge on the host (no LVM here): help with its EXIT
STATUS section, and what is refused before LVM or libvirt is asked anything."""

from __future__ import annotations

import pytest
from clikit import Main, one_line_error

from vmsnap.errors import ExitCode


@pytest.mark.parametrize(
    "command",
    [
        ["checkpoint"],
        ["checkpoint", "create"],
        ["checkpoint", "list"],
        ["checkpoint", "rollback"],
        ["checkpoint", "release"],
        ["checkpoint", "watch"],
    ],
)
def test_help_ends_with_the_exit_status_section(main: Main, command: list[str]) -> None:
    code, out, _err = main(*command, "--help")
    assert code == 0
    section = out[out.index("EXIT STATUS") :]
    assert " 13 " in section


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "a b"], "bad checkpoint label 'a b'"),
        (["--label", "ok", "--expire", "soon"], "bad duration 'soon'"),
        (["--snapshot-size", "0%"], "bad size '0%'"),
    ],
)
def test_bad_options_are_usage_errors(main: Main, uri: str, args: list[str], message: str) -> None:
    code, _out, err = main("checkpoint", "create", "web01", "--connect", uri, *args)
    assert code == ExitCode.USAGE
    assert message in one_line_error(err)


def test_rollback_of_an_unknown_guest(main: Main, uri: str) -> None:
    code, _out, err = main("checkpoint", "rollback", "nosuch", "--connect", uri)
    assert code == ExitCode.NOT_FOUND
    assert "no guest named 'nosuch'" in one_line_error(err)
