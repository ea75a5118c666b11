"""One invocation's session: the global options, and the option > configuration
file > default rule for the settings several commands share.

The ``_root`` callback fills the :class:`Session` that ``main`` puts in typer's
``ctx.obj``; commands read it with :meth:`Session.of`.  Nothing is global.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import typer

from vmsnap import config
from vmsnap.cli.core import retention, virt
from vmsnap.console import make_progress, to_log_file
from vmsnap.errors import ExitCode, UsageError
from vmsnap.hooks import Hooks
from vmsnap.progress import Progress
from vmsnap.repo import location
from vmsnap.repo.location import Dest


@dataclass
class Session:
    argv: list[str] = field(default_factory=list)  # the command line, for the log
    debug: bool = False
    quiet: bool = False
    json: bool = False  # --json: a failure prints an error document on stdout too
    hooks_dir: Path | None = None
    config_file: Path | None = None
    loaded: config.Config | None = None  # read when a command first needs it

    @classmethod
    def of(cls, ctx: typer.Context) -> Session:
        session = ctx.obj
        assert isinstance(session, Session), "main() puts a Session in ctx.obj"
        return session

    def config(self) -> config.Config:
        """The configuration file's settings, read once, when a command needs them."""
        if self.loaded is None:
            self.loaded = config.load(config.find(self.config_file))
        return self.loaded

    def uri(self, connect: str | None) -> str | None:
        """--connect, else $LIBVIRT_DEFAULT_URI, else the configuration file's connect."""
        return connect or virt.default_uri() or self.config().connect

    def repository(self, dest: str | None) -> Dest:
        """--dest, else the file's: the repository (init may create it; for the
        others a missing folder is status 9, a folder without one 15), with the
        file's [s3] settings for a bucket."""
        chosen = dest or self.config().dest
        if not chosen:
            raise UsageError("--dest REPO is required (or dest in the configuration file)")
        return location.parse(chosen, self.config().s3)

    def hooks(self) -> Hooks:
        """--hooks-dir, else $VMSNAP_HOOKS_DIR, else the configuration file's hooks_dir."""
        chosen = self.hooks_dir
        if chosen is None and not os.environ.get("VMSNAP_HOOKS_DIR"):
            chosen = self.config().hooks_dir
        return Hooks.from_environment(chosen)

    @staticmethod
    def lock_wait(option: float | None) -> float | None:
        """--lock-wait, else $VMSNAP_LOCK_WAIT, else None (the lock's own default)."""
        if option is not None:
            return option
        text = os.environ.get("VMSNAP_LOCK_WAIT", "").strip()
        try:
            return float(text) if text else None
        except ValueError:
            raise UsageError(f"VMSNAP_LOCK_WAIT={text!r}: not a number of seconds") from None

    def progress(self, flag: bool | None) -> Progress:
        """-q silences progress unless --progress asks for it."""
        return make_progress(False if self.quiet and flag is None else flag)

    def configured_policy(self) -> retention.Policy:
        policy = self.config().retention
        if policy is None or policy.empty:
            raise UsageError(
                "no retention policy: set keep_last, keep_daily, keep_weekly or keep_monthly "
                "under [retention] in the configuration file"
            )
        return policy

    def policy(self, keeps: dict[str, int | None]) -> retention.Policy:
        """The --keep-* options if any is given (they replace [retention] as a whole),
        else the configuration file's."""
        if all(v is None for v in keeps.values()):
            return self.configured_policy()
        policy = retention.Policy(**{k: v or 0 for k, v in keeps.items()})
        if policy.empty:
            raise UsageError("every --keep-* is 0: that would keep nothing but the newest")
        return policy

    def error(self, text: str, exc: BaseException) -> None:
        """One error line, its notes, and with --debug the traceback."""
        say_error(text)
        for note in getattr(exc, "__notes__", ()):
            print(f"vmsnap:   {note}", file=sys.stderr)
            to_log_file(logging.ERROR, f"  {note}")
        if self.debug:
            traceback.print_exception(exc, file=sys.stderr)


def say_error(text: str) -> None:
    """A ``vmsnap: error:`` line on stderr, and the same in the --log-file log."""
    print(f"vmsnap: error: {text}", file=sys.stderr)
    to_log_file(logging.ERROR, text)


def done(code: int) -> None:
    """End a command with ``code`` (typer ignores return values)."""
    if code != ExitCode.OK:
        raise typer.Exit(int(code))
