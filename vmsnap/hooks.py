"""Site hooks: executables in a hooks directory, run in name order at each phase.

The directory is scanned like ``run-parts`` does: names made only of ASCII
letters, digits, ``_`` and ``-``, regular executable files, sorted in C
order; anything else is skipped.  A hook is run only when it and every folder
above it (after resolving links) belong to root and no group or other user
can write them: a world-writable sticky folder such as ``/tmp`` is refused
too.  Each hook gets a timeout; at the timeout its whole process group is
killed.  Its output goes to the log.

At a *veto* phase (job-start, pre-quiesce, pre-rollback) the first hook that
fails, times out or is refused stops the operation with :class:`HookError`;
at every other phase all hooks run, failures are logged as errors and never
change the outcome nor hide the operation's own error.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vmsnap import runner
from vmsnap.errors import HookError, UsageError, VmsnapError

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("/etc/vmsnap/hooks.d")
DEFAULT_TIMEOUT = 300.0
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")

JOB_START = "job-start"
PRE_QUIESCE = "pre-quiesce"
POST_SNAPSHOT = "post-snapshot"
BACKUP_END = "backup-end"
BACKUP_ABORT = "backup-abort"
JOB_END = "job-end"
CHECKPOINT_END = "checkpoint-end"
CHECKPOINT_ABORT = "checkpoint-abort"
PRE_ROLLBACK = "pre-rollback"
POST_ROLLBACK = "post-rollback"
POST_RELEASE = "post-release"
RESTORE_END = "restore-end"
RESTORE_ABORT = "restore-abort"
CLONE_END = "clone-end"
CLONE_ABORT = "clone-abort"
VETO_PHASES = frozenset({JOB_START, PRE_QUIESCE, PRE_ROLLBACK})

VARIABLES = (
    "VMSNAP_PHASE",
    "VMSNAP_COMMAND",
    "VMSNAP_RUN_ID",
    "VMSNAP_DOMAIN",
    "VMSNAP_DOMAIN_UUID",
    "VMSNAP_DEST",
    "VMSNAP_BACKUP_DIR",
    "VMSNAP_QUIESCE",
    "VMSNAP_VOLUMES",
    "VMSNAP_SNAPSHOTS",
    "VMSNAP_LABEL",
    "VMSNAP_SOURCE",
    "VMSNAP_STATUS",
    "VMSNAP_ERROR",
)
"""Every variable vmsnap may set; inherited ones of these names are dropped."""


def _unsafe(path: Path) -> str | None:
    """Why ``path`` could have been changed by someone other than root, or None."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if info.st_uid != 0:
        return f"{path} belongs to uid {info.st_uid}, not root"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def check_safe(path: Path) -> None:
    """Refuse a hook (or hooks folder) that anyone but root could have changed:
    the file itself and every folder above it, links resolved."""
    real = Path(os.path.realpath(path))
    for each in (real, *real.parents):
        reason = _unsafe(each)
        if reason is not None:
            raise HookError(
                f"hook {path} refused: {reason}",
                hint="hooks must be root's, in root's folders, writable by no one else",
            )


def _is_hook(path: Path) -> bool:
    if not NAME_RE.match(path.name):
        log.debug("hook %s skipped: not a run-parts name", path)
        return False
    if not path.is_file() or not os.access(path, os.X_OK):
        log.debug("hook %s skipped: not an executable file", path)
        return False
    return True


@dataclass(frozen=True)
class Hooks:
    """Where the hooks are (None: no hooks at all) and how long each may run."""

    directory: Path | None = DEFAULT_DIR
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_environment(cls, directory: Path | None = None) -> Hooks:
        """``--hooks-dir``, else ``VMSNAP_HOOKS_DIR``, else the default folder;
        ``VMSNAP_HOOK_TIMEOUT`` in seconds."""
        text = os.environ.get("VMSNAP_HOOK_TIMEOUT", str(DEFAULT_TIMEOUT))
        try:
            timeout = float(text)
        except ValueError:
            raise UsageError(f"VMSNAP_HOOK_TIMEOUT={text!r} is not a number of seconds") from None
        chosen = directory or Path(os.environ.get("VMSNAP_HOOKS_DIR") or DEFAULT_DIR)
        return cls(directory=chosen, timeout=max(timeout, 0.1))

    def scripts(self) -> list[Path]:
        """The hooks to run, in order; none when the folder does not exist."""
        if self.directory is None or not self.directory.is_dir():
            return []
        check_safe(self.directory)
        return [p for p in sorted(self.directory.iterdir(), key=lambda p: p.name) if _is_hook(p)]

    def scope(self, **env: str) -> Scope:
        return Scope(self, dict(env))


def _environment(phase: str, env: Mapping[str, str]) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    full.update(env)
    full["VMSNAP_PHASE"] = phase
    return full


def run_one(script: Path, phase: str, env: dict[str, str], timeout: float) -> None:
    """Run one hook; HookError if it is refused, cannot start, fails or times out."""
    check_safe(script)
    log.debug("hook %s at %s", script.name, phase)
    try:
        done = runner.run_script([str(script), phase], env=env, timeout=timeout)
    except OSError as exc:
        raise HookError(f"hook {script} could not be started: {exc.strerror}") from exc
    for line in done.output.splitlines():
        log.info("hook %s (%s): %s", script.name, phase, line)
    if done.timed_out:
        raise HookError(f"hook {script} at {phase} did not finish within {timeout:g} s: killed")
    if done.returncode != 0:
        raise HookError(f"hook {script} at {phase} exited with status {done.returncode}")


@dataclass(frozen=True)
class Scope:
    """Hooks with the variables of one job or guest; phases add their own."""

    hooks: Hooks
    env: dict[str, str] = field(default_factory=dict)

    def bind(self, **env: str) -> Scope:
        return Scope(self.hooks, {**self.env, **env})

    def run(self, phase: str, **env: str) -> None:
        """A veto phase raises the first failure; any other phase logs them."""
        full = _environment(phase, {**self.env, **env})
        if phase in VETO_PHASES:
            for script in self.hooks.scripts():
                run_one(script, phase, full, self.hooks.timeout)
            return
        try:
            scripts = self.hooks.scripts()
        except VmsnapError as exc:
            log.error("%s", exc)
            return
        for script in scripts:
            try:
                run_one(script, phase, full, self.hooks.timeout)
            except VmsnapError as exc:
                log.error("%s", exc)


NO_HOOKS = Scope(Hooks(directory=None))
"""A scope that runs nothing (library callers and tests that want no hooks)."""
