"""The one door to external programs: argv lists only, never a shell.

Every command runs with ``LC_ALL=C`` (parsable output), a timeout, and its exit
status checked.  Commands that change state run with signals deferred so that a
Ctrl-C cannot kill them half-way.  Each command is logged once it ends, with
its status and duration: one that changes state at VERBOSE (``-v``), any other
at DEBUG (``-vv``), and what a failing one said on stderr at DEBUG.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass

from vmsnap.errors import CommandError, LvmError
from vmsnap.logs import VERBOSE
from vmsnap.signals import GATE

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    env["LVM_SUPPRESS_FD_WARNINGS"] = "1"
    return env


def _execute(argv: list[str], timeout: float) -> Completed:
    try:
        proc = subprocess.run(  # noqa: S603 - argv list, no shell
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches vmsnap, not LVM
            check=False,
        )
    except FileNotFoundError as exc:
        raise LvmError(f"{argv[0]}: command not found", hint="install the lvm2 package") from exc
    except subprocess.TimeoutExpired as exc:
        raise LvmError(f"{argv[0]} did not finish within {timeout:.0f} s") from exc
    return Completed(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def run(
    argv: list[str],
    *,
    mutates: bool = False,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Completed:
    """Run ``argv``; raise :class:`CommandError` on a non-zero exit if ``check``."""
    start = time.monotonic()
    if mutates:
        with GATE.deferred():
            result = _execute(argv, timeout)
    else:
        result = _execute(argv, timeout)
    _log_command(result, time.monotonic() - start, mutates=mutates)
    if check and result.returncode != 0:
        raise CommandError(list(argv), result.returncode, result.stderr)
    return result


def _log_command(result: Completed, seconds: float, *, mutates: bool) -> None:
    level = VERBOSE if mutates else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    log.log(level, "%s: status %d in %.2f s", shlex.join(result.argv), result.returncode, seconds)
    if result.returncode != 0:
        for line in result.stderr.strip().splitlines():
            log.debug("%s: %s", result.argv[0], line.strip())


@dataclass(frozen=True)
class ScriptResult:
    returncode: int  # -1 when it was killed at the timeout
    output: str  # stdout and stderr, interleaved
    timed_out: bool


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_script(argv: list[str], *, env: dict[str, str], timeout: float) -> ScriptResult:
    """Run a site script (a hook) in its own process group with ``env`` as its
    whole environment; at the timeout, or if vmsnap is interrupted, the whole
    group is killed.  A script that cannot be started raises OSError."""
    start = time.monotonic()
    result = _run_script(argv, env=env, timeout=timeout)
    status = "timed out" if result.timed_out else f"status {result.returncode}"
    log.debug("%s: %s in %.2f s", shlex.join(argv), status, time.monotonic() - start)
    return result


def _run_script(argv: list[str], *, env: dict[str, str], timeout: float) -> ScriptResult:
    proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
        cwd="/",
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        if proc.stdout is not None:
            proc.stdout.close()  # a child that left the group may still hold it
        return ScriptResult(-1, "", True)
    except BaseException:
        _kill_group(proc)
        raise
    return ScriptResult(proc.returncode, output, False)
