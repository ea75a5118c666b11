"""The README's quick start for users, kept honest: the block of commands under
"On your hypervisor" is read as a shell would split it, and checked against the
repository (the files it installs exist, the link it makes is where the
systemd units call vmsnap, every vmsnap command line in it parses) and against
pyproject.toml (a plain ``pip install .`` ships every package).  The whole
block was run as typed into /opt on a Debian 12 host (see the report of the
change that wrote it); ``pip install`` itself is not repeated here."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from clikit import Main
from test_cli_units import NAMES, unit

REPO = Path(__file__).resolve().parents[2]
SECTION = "### On your hypervisor"


def blocks() -> list[list[list[str]]]:
    """The section's ``sh`` blocks, each as its command lines split into words."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) : text.index("\n### ", text.index(SECTION) + 1)]
    found = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(found) == 2, "the install block, then the first backup"
    return [[shlex.split(line, comments=True) for line in _lines(b)] for b in found]


def _lines(block: str) -> list[str]:
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


INSTALL, FIRST_USE = blocks()


def command(program: str) -> list[str]:
    matches = [words for words in INSTALL if words[0] == program]
    assert len(matches) == 1, f"one {program} line in the install block"
    return matches[0]


def venv() -> Path:
    words = command("python3")
    assert words[:3] == ["python3", "-m", "venv"]
    return Path(words[3])


def test_it_installs_into_a_venv_not_into_debians_python() -> None:
    assert command(str(venv() / "bin" / "pip")) == [str(venv() / "bin" / "pip"), "install", "."]
    assert not any(w[0] in ("pip", "pip3") for w in INSTALL)  # PEP 668 refuses those


def test_apt_installs_what_the_venv_and_libvirt_python_need() -> None:
    packages = {w for words in INSTALL if words[:2] == ["apt-get", "install"] for w in words[2:]}
    wanted = {"python3-venv", "lvm2", "zstd", "libvirt-dev", "pkg-config", "gcc", "python3-dev"}
    assert wanted <= packages
    setup = (REPO / "tests" / "setup-host.sh").read_text()
    builds = re.search(r"(.*) # libvirt-python builds from source", setup)
    assert builds is not None
    assert set(builds.group(1).split()) - {"libvirt-clients"} <= packages


def test_the_link_is_where_the_units_call_vmsnap() -> None:
    ln = command("ln")
    assert ln[:2] == ["ln", "-sf"]
    assert Path(ln[2]) == venv() / "bin" / "vmsnap"
    for name in (n for n in NAMES if n.endswith(".service")):
        assert shlex.split(unit(name)["Service"]["ExecStart"])[0] == ln[3], name


def test_the_units_go_where_systemd_looks_and_all_of_them() -> None:
    words = next(w for w in INSTALL if w[0] == "install" and "-t" in w)
    assert words[words.index("-t") + 1] == "/etc/systemd/system"
    assert sorted(p.name for p in REPO.glob(words[-1])) == sorted(NAMES)


def test_every_file_it_installs_is_in_the_repository() -> None:
    installs = [w for w in INSTALL if w[0] == "install"]
    assert len(installs) == 4
    for words in installs:
        sources = [w for w in words[1:] if "/" in w and not w.startswith("/")]
        assert sources, words
        for source in sources:
            assert list(REPO.glob(source)), source


def test_the_man_pages_go_where_man_looks() -> None:
    targets = {w[-1] for w in INSTALL if w[0] == "install" and "-t" not in w}
    assert "/usr/local/share/man/man8/vmsnap.8" in targets
    assert "/usr/local/share/man/man5/vmsnap-format.5" in targets
    assert "/etc/vmsnap/vmsnap.toml" in targets  # where config.find() looks


def vmsnap_lines() -> list[list[str]]:
    return [w for w in INSTALL + FIRST_USE if w[0] == "vmsnap"]


@pytest.mark.parametrize("words", vmsnap_lines(), ids=" ".join)
def test_every_vmsnap_command_line_parses(main: Main, words: list[str]) -> None:
    args = words[1 : words.index(">")] if ">" in words else words[1:]
    code, out, err = main(*args, "--help")  # every option name is checked first
    assert (code, err) == (0, ""), err
    assert out


def test_the_first_backup_uses_the_installed_configuration() -> None:
    example = tomllib.loads((REPO / "vmsnap" / "data" / "vmsnap.toml.example").read_text())
    dest = example["dest"]
    assert dest == "/srv/backup"
    assert ["vmsnap", "init"] in FIRST_USE  # the repository, at the file's dest
    assert ["vmsnap", "verify", "--read-data"] in FIRST_USE


def test_a_plain_pip_install_ships_every_package() -> None:
    """``pip install .`` is not editable: a package missing from pyproject.toml
    is missing from /opt/vmsnap, though the developers' editable .venv has it."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "vmsnap").rglob("__init__.py")
    }
    if "packages" in setuptools and isinstance(setuptools["packages"], list):
        assert packages <= set(setuptools["packages"])
    else:
        assert setuptools["packages"]["find"]["include"] == ["vmsnap*"]


def test_the_completion_line_writes_bashs_script_from_any_shell(tmp_path: Path) -> None:
    """Typer's --show-completion guesses the shell from its parent and takes no
    shell name: from sh (make, a root cron job) it printed "Shell sh not
    supported" into the completion file.  The line sets the variable instead."""
    (words,) = [w for w in INSTALL if w[0].startswith("_VMSNAP_COMPLETE=")]
    name, value = words[0].split("=")
    assert words[1:3] == ["vmsnap", ">"]
    assert words[3] == "/etc/bash_completion.d/vmsnap"
    env = {"PATH": os.environ["PATH"], "SHELL": "/bin/sh", name: value}
    vmsnap = str(Path(sys.executable).with_name("vmsnap"))
    run = subprocess.run(["sh", "-c", f'"{vmsnap}"'], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "complete -o default -F _vmsnap_completion vmsnap" in run.stdout
