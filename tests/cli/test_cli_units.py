"""The systemd units shipped in vmsnap/data/systemd: well-formed (systemd-analyze
verify where it is installed), the timers the README promises, and ExecStart
command lines that vmsnap's own parser accepts."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from clikit import VMSNAP, Main

UNITS = Path(__file__).resolve().parents[2] / "vmsnap" / "data" / "systemd"
NAMES = [
    "vmsnap-backup.service",
    "vmsnap-backup.timer",
    "vmsnap-checkpoint-watch.service",
    "vmsnap-checkpoint-watch.timer",
]


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign] # keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


def test_the_units_are_there() -> None:
    assert sorted(p.name for p in UNITS.iterdir()) == sorted(NAMES)


def test_the_backup_timer_is_nightly_persistent_and_spread() -> None:
    timer = unit("vmsnap-backup.timer")["Timer"]
    assert timer["OnCalendar"] == "*-*-* 02:30:00"
    assert timer["Persistent"] == "true"
    assert "RandomizedDelaySec" in timer
    assert unit("vmsnap-backup.timer")["Install"]["WantedBy"] == "timers.target"
    service = unit("vmsnap-backup.service")["Service"]
    assert service["Type"] == "oneshot"
    assert shlex.split(service["ExecStart"])[1:] == [
        "-q",
        "backup",
        "--all",
        "--prune",
        "--no-progress",
    ]


def test_the_watch_timer_runs_every_15_minutes() -> None:
    assert unit("vmsnap-checkpoint-watch.timer")["Timer"]["OnUnitActiveSec"] == "15min"
    service = unit("vmsnap-checkpoint-watch.service")["Service"]
    assert shlex.split(service["ExecStart"])[1:] == ["checkpoint", "watch"]


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith(".service")])
def test_execstart_parses_as_a_vmsnap_command_line(main: Main, name: str) -> None:
    argv = shlex.split(unit(name)["Service"]["ExecStart"])
    assert argv[0] == "/usr/local/bin/vmsnap"  # the README quick start links it there
    code, out, err = main(*argv[1:], "--help")  # every option name is checked first
    assert (code, err) == (0, "")
    assert "EXIT STATUS" in out


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    for name in NAMES:  # ExecStart must name a program that exists here
        text = (UNITS / name).read_text().replace("/usr/local/bin/vmsnap", VMSNAP)
        (tmp_path / name).write_text(text)
    run = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *NAMES],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


# ---------------------------------------------------------------- shell completion


def completion(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VMSNAP, *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_show_completion_prints_a_bash_script() -> None:
    run = completion("--show-completion", "bash", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert run.returncode == 0, run.stderr
    assert "_vmsnap_completion()" in run.stdout
    assert "_VMSNAP_COMPLETE=complete_bash" in run.stdout


@pytest.mark.parametrize(
    ("words", "wanted"),
    [
        ("vmsnap pru", "prune"),
        ("vmsnap prune --keep-d", "--keep-daily"),
        ("vmsnap --conf", "--config"),
    ],
)
def test_completion_completes_commands_and_options(words: str, wanted: str) -> None:
    run = completion(
        _VMSNAP_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1)
    )
    assert (run.returncode, run.stdout.split()) == (0, [wanted])
