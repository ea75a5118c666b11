"""vmsnap(8) documents every command and every option the CLI has, lists the
exit statuses, and renders without warnings."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main

from vmsnap.cli import app
from vmsnap.errors import ExitCode

MAN = Path(__file__).resolve().parents[2] / "man"
PAGE = (MAN / "vmsnap.8").read_text()


def commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(name, command) of every command, through the sub-apps (typer's click)."""
    found = []
    for name, cmd in group.commands.items():
        path = f"{prefix}{name}"
        if hasattr(cmd, "commands"):
            found += commands(cmd, f"{path} ")
        else:
            found.append((path, cmd))
    return found


ROOT = typer.main.get_command(app)
COMMANDS = commands(ROOT)


def roff(option: str) -> str:
    return option.replace("-", r"\-")


def section(title: str) -> str:
    """The text of the ``.SS`` section whose heading starts with ``title``."""
    match = re.search(
        r'^\.SS "?' + re.escape(roff(title)) + r"\b.*?$(.*?)(?=^\.S[SH] )",
        PAGE,
        re.MULTILINE | re.DOTALL,
    )
    assert match, f"vmsnap(8) has no section for {title!r}"
    return match.group(1)


def options(cmd: Any) -> list[str]:
    names = [n for p in cmd.params for n in (*p.opts, *p.secondary_opts) if n.startswith("-")]
    return [n for n in names if n not in ("-h", "--help")]


def test_the_walk_finds_the_commands() -> None:
    names = [name for name, _cmd in COMMANDS]
    assert {"backup", "prune", "backups", "checkpoint create", "image dump"} <= set(names)


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[n for n, _c in COMMANDS])
def test_every_command_and_option_is_in_the_man_page(name: str, cmd: Any) -> None:
    text = section(name)
    synopsis = PAGE[: PAGE.index(".SH DESCRIPTION")]
    assert re.search(r"^\.B " + re.escape(name) + "$", synopsis, re.MULTILINE), name
    missing = [o for o in options(cmd) if roff(o) not in text]
    assert not missing, f"{name}: not in its vmsnap(8) section: {missing}"


def test_every_global_option_is_in_the_man_page() -> None:
    text = section("Global options")
    missing = [o for o in options(ROOT) if roff(o) not in text]
    assert not missing, f"global options missing from vmsnap(8): {missing}"
    for completion in ("--install-completion", "--show-completion"):
        assert roff(completion) in text


def test_every_exit_status_is_in_the_man_page() -> None:
    text = PAGE[PAGE.index(".SH EXIT STATUS") : PAGE.index(".SH ENVIRONMENT")]
    for code in ExitCode:
        if code is not ExitCode.INTERRUPTED:
            assert f".B {int(code)}\n" in text, code
    assert ".B 129/130/143\n" in text


def test_the_required_sections_are_there() -> None:
    for title in ("EXIT STATUS", "FILES", "ENVIRONMENT", "HOOKS", "EXAMPLES", "CONFIGURATION"):
        assert f"\n.SH {title}\n" in PAGE, title
    for variable in (
        "VMSNAP_CONFIG",
        "VMSNAP_HOOKS_DIR",
        "VMSNAP_LOCK_FILE",
        "LIBVIRT_DEFAULT_URI",
    ):
        assert f".B {variable}\n" in PAGE[PAGE.index(".SH ENVIRONMENT") :], variable
    files = PAGE[PAGE.index(".SH FILES") : PAGE.index(".SH EXAMPLES")]
    assert "/etc/vmsnap/vmsnap.toml" in files


@pytest.mark.parametrize("page", ["vmsnap.8", "vmsnap-format.5"])
def test_the_man_pages_render_without_warnings(page: str) -> None:
    if shutil.which("mandoc") is None:
        pytest.skip("mandoc is not installed (make setup installs it)")
    run = subprocess.run(
        ["mandoc", "-T", "lint", "-W", "warning", str(MAN / page)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("page", ["vmsnap.8", "vmsnap-format.5"])
def test_groff_renders_the_man_pages_without_warnings(page: str) -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    run = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(MAN / page)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (run.returncode, run.stdout + run.stderr) == (0, "")
