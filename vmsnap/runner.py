"""The one door to external programs: argv lists only, never a shell.

Every command runs with ``LC_ALL=C`` (parsable output), a timeout, and its exit
status checked.  Commands that change state run with signals deferred so that a
Ctrl-C cannot kill them half-way.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from vmsnap.errors import CommandError, LvmError
from vmsnap.signals import GATE

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
    if mutates:
        with GATE.deferred():
            result = _execute(argv, timeout)
    else:
        result = _execute(argv, timeout)
    if check and result.returncode != 0:
        raise CommandError(list(argv), result.returncode, result.stderr)
    return result
