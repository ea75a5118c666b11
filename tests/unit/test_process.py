"""The process-level pieces, with real processes, signals and locks: the runner
(the one door to external programs), the signal gate and the run lock."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from vmsnap import runner
from vmsnap.errors import CommandError, ExitCode, Interrupted, LockedError, LvmError
from vmsnap.lock import lock_path, run_lock
from vmsnap.signals import SignalGate

# ---------------------------------------------------------------- runner


def test_run_returns_output() -> None:
    done = runner.run(["printf", "a\\nb"])
    assert (done.argv, done.returncode, done.stdout, done.stderr) == (
        ("printf", "a\\nb"),
        0,
        "a\nb",
        "",
    )


def test_run_uses_the_c_locale() -> None:
    env = dict(
        line.split("=", 1) for line in runner.run(["env"]).stdout.splitlines() if "=" in line
    )
    assert env["LC_ALL"] == "C"
    assert env["LVM_SUPPRESS_FD_WARNINGS"] == "1"


def test_run_gives_no_stdin() -> None:
    assert runner.run(["cat"], timeout=10).stdout == ""


def test_non_zero_exit_is_a_command_error() -> None:
    with pytest.raises(CommandError) as info:
        runner.run(["sh", "-c", "echo first >&2; echo '  the cause  ' >&2; exit 3"])
    err = info.value
    assert (err.returncode, err.exit_code) == (3, ExitCode.LVM)
    assert str(err) == "sh failed with status 3: the cause"
    assert "first" in err.stderr


def test_unchecked_run_returns_the_status() -> None:
    assert runner.run(["false"], check=False).returncode == 1
    assert runner.run(["true"], mutates=True).returncode == 0


def test_missing_program() -> None:
    with pytest.raises(LvmError) as info:
        runner.run(["vmsnap-no-such-program"])
    assert "command not found" in str(info.value)
    assert info.value.hint == "install the lvm2 package"


def test_timeout() -> None:
    with pytest.raises(LvmError, match="did not finish within"):
        runner.run(["sleep", "10"], timeout=0.2)


# ---------------------------------------------------------------- signal gate


@pytest.fixture
def gate(restore_signals: None) -> SignalGate:
    fresh = SignalGate()
    fresh.install()
    return fresh


def signal_self(*signums: int) -> None:
    for signum in signums:
        os.kill(os.getpid(), signum)
    time.sleep(0.01)  # the handler has run by now


def hold(gate: SignalGate, steps: list[str], *signums: int) -> None:
    with gate.deferred():
        signal_self(*signums)
        steps.append("end of body")


def hold_nested(gate: SignalGate, steps: list[str], signum: int) -> None:
    with gate.deferred():
        hold(gate, steps, signum)
        steps.append("after inner")


def fail_while_holding(gate: SignalGate, signum: int) -> None:
    with gate.deferred():
        signal_self(signum)
        raise ValueError("body")


def test_a_signal_outside_a_deferred_section_interrupts_at_once(gate: SignalGate) -> None:
    with pytest.raises(Interrupted) as info:
        signal_self(signal.SIGTERM)
    assert info.value.signum == signal.SIGTERM


def test_deferred_holds_a_signal_until_the_end(gate: SignalGate) -> None:
    steps: list[str] = []
    with pytest.raises(Interrupted) as info:
        hold(gate, steps, signal.SIGINT)
    assert steps == ["end of body"]
    assert info.value.signum == signal.SIGINT
    assert gate.pending == signal.SIGINT


def test_nested_deferred_raises_only_at_the_outermost(gate: SignalGate) -> None:
    steps: list[str] = []
    with pytest.raises(Interrupted):
        hold_nested(gate, steps, signal.SIGHUP)
    assert steps == ["end of body", "after inner"]


def test_first_signal_wins(gate: SignalGate) -> None:
    steps: list[str] = []
    with pytest.raises(Interrupted) as info:
        hold(gate, steps, signal.SIGHUP, signal.SIGTERM)
    assert info.value.signum == signal.SIGHUP


def test_deferred_never_hides_the_body_error(gate: SignalGate) -> None:
    with pytest.raises(ValueError, match="body"):
        fail_while_holding(gate, signal.SIGTERM)
    assert gate.pending == signal.SIGTERM


def test_no_signal_no_interruption(gate: SignalGate) -> None:
    steps: list[str] = []
    hold(gate, steps)
    gate.raise_pending()
    assert gate.pending is None
    assert steps == ["end of body"]


# ---------------------------------------------------------------- run lock


def test_lock_path_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VMSNAP_LOCK_FILE", str(tmp_path / "l"))
    assert lock_path() == str(tmp_path / "l")
    monkeypatch.delenv("VMSNAP_LOCK_FILE")
    assert lock_path() == "/run/lock/vmsnap.lock"


def test_lock_records_the_pid_and_excludes_a_second_run(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "vmsnap.lock"
    with run_lock(path=str(path)):
        assert path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(LockedError) as info, run_lock(wait=0.3, path=str(path)):
            pass
        assert info.value.exit_code == ExitCode.LOCKED
        assert str(path) in str(info.value)
    with run_lock(wait=0.3, path=str(path)):  # released
        pass


def test_lock_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target"
    link = tmp_path / "vmsnap.lock"
    link.symlink_to(target)
    with pytest.raises(LockedError, match="symlink"), run_lock(wait=0, path=str(link)):
        pass
    assert not target.exists()
