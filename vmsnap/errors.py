"""Exit codes and the error hierarchy.

Every failure vmsnap reports is a :class:`VmsnapError` subclass that carries its
own exit code.  Only the CLI turns them into process exit status and text.
"""

from __future__ import annotations

import enum
import signal


class ExitCode(enum.IntEnum):
    """The exit-status contract (documented in ``vmsnap --help`` and vmsnap(8))."""

    OK = 0
    PARTIAL = 1  # some guests succeeded, some failed
    USAGE = 2  # bad command line (typer/click use 2 as well)
    NOT_FOUND = 3  # unknown guest, LV, file or path
    UNSUPPORTED_DISK = 4  # a disk that cannot be snapshotted (not an LV)
    NO_SPACE = 5  # a volume group without room for the snapshots
    LVM = 6  # LVM tools missing or an LVM command failed
    LIBVIRT = 7  # cannot connect to libvirt or a libvirt call failed
    QUIESCE = 8  # the requested quiesce mode could not be applied
    DESTINATION = 9  # the destination is unwritable, full or unsafe
    INTEGRITY = 10  # data read back does not match (length, checksum)
    LOCKED = 11  # another vmsnap run holds the lock
    LEFT_BEHIND = 12  # a snapshot could not be removed or a guest released
    HOOK = 13  # a hook vetoed, failed, timed out, or is not safe to run
    EXISTS = 14  # a new guest, LV or file to create already exists
    INTERNAL = 70  # a bug: an unexpected exception (EX_SOFTWARE)
    INTERRUPTED = 130  # SIGINT; SIGTERM gives 143 and SIGHUP 129 (128 + signal)


class VmsnapError(Exception):
    """Base class: a message for the user and the exit code it maps to."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} ({self.hint})"


class UsageError(VmsnapError):
    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The configuration file is not valid: it names the key (and line)."""


class NotFoundError(VmsnapError):
    exit_code = ExitCode.NOT_FOUND


class UnsupportedDiskError(VmsnapError):
    exit_code = ExitCode.UNSUPPORTED_DISK


class NoSpaceError(VmsnapError):
    exit_code = ExitCode.NO_SPACE


class LvmError(VmsnapError):
    exit_code = ExitCode.LVM


class LibvirtError(VmsnapError):
    exit_code = ExitCode.LIBVIRT


class QuiesceError(VmsnapError):
    exit_code = ExitCode.QUIESCE


class DestinationError(VmsnapError):
    exit_code = ExitCode.DESTINATION


class IntegrityError(VmsnapError):
    exit_code = ExitCode.INTEGRITY


class TruncatedError(IntegrityError):
    """Data that ends too early (an image cut short): incomplete rather than corrupt."""


class LockedError(VmsnapError):
    exit_code = ExitCode.LOCKED


class ExistsError(VmsnapError):
    """Something this run would create (a guest, an LV, a file) is already
    there: refused rather than overwritten, before anything is changed."""

    exit_code = ExitCode.EXISTS


class LeftBehindError(VmsnapError):
    exit_code = ExitCode.LEFT_BEHIND


class HookError(VmsnapError):
    """A hook said no (non-zero exit at a phase that can veto), timed out, or
    was refused because someone other than root could have changed it."""

    exit_code = ExitCode.HOOK


class CommandError(LvmError):
    """An external command exited non-zero (LVM is the only system we shell out to)."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        last = stderr.strip().splitlines()[-1].strip() if stderr.strip() else "no message"
        super().__init__(f"{argv[0]} failed with status {returncode}: {last}")
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class Interrupted(VmsnapError):
    """SIGINT, SIGTERM or SIGHUP arrived; exit status is 128 + the signal number."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
