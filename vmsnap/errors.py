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
    NOT_A_REPOSITORY = 15  # --dest names a folder that is not a chunk repository
    REPOSITORY_VERSION = 16  # a repository of a newer (or unknown) format version
    MISSING_DATA = 17  # a chunk a backup needs is not in the repository
    ACCESS_DENIED = 18  # the object store refused the credentials or the request
    UNREACHABLE = 19  # the object store did not answer (after retries)
    INTERNAL = 70  # a bug: an unexpected exception (EX_SOFTWARE)
    INTERRUPTED = 130  # SIGINT; SIGTERM gives 143 and SIGHUP 129 (128 + signal)


EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.PARTIAL: "partial: some guests backed up, some failed",
    ExitCode.USAGE: "usage error",
    ExitCode.NOT_FOUND: "not found (guest, volume, file)",
    ExitCode.UNSUPPORTED_DISK: "a disk that cannot be snapshotted (not an LV)",
    ExitCode.NO_SPACE: "a volume group without room for the snapshots",
    ExitCode.LVM: "LVM tools missing or an LVM command failed",
    ExitCode.LIBVIRT: "libvirt connection or call failed",
    ExitCode.QUIESCE: "the requested quiesce mode could not be applied",
    ExitCode.DESTINATION: "destination missing, unwritable or full",
    ExitCode.INTEGRITY: "integrity: data does not match its length or checksum",
    ExitCode.LOCKED: "another vmsnap run holds the lock",
    ExitCode.LEFT_BEHIND: "something left behind (a snapshot, a paused or frozen guest)",
    ExitCode.HOOK: "a hook vetoed, failed, timed out or was refused as unsafe",
    ExitCode.EXISTS: "a guest, LV or file to create already exists",
    ExitCode.NOT_A_REPOSITORY: "not a repository (no config: run vmsnap init --dest)",
    ExitCode.REPOSITORY_VERSION: "a repository of a newer format version",
    ExitCode.MISSING_DATA: "a chunk a backup needs is missing from the repository",
    ExitCode.ACCESS_DENIED: "the object store refused the credentials or the access",
    ExitCode.UNREACHABLE: "the object store did not answer",
    ExitCode.INTERNAL: "internal error (a bug: please report it, with --debug output)",
    ExitCode.INTERRUPTED: "interrupted by SIGHUP/SIGINT/SIGTERM",
}
"""What each status means: the EXIT STATUS section of every --help is made from
this table (vmsnap(8) says the same; a test holds the three together)."""


def _severity(code: int) -> int:
    """Success, then partial, then an error, then something left behind, then a bug."""
    if code in (ExitCode.OK, ExitCode.PARTIAL):
        return int(code)
    return {ExitCode.LEFT_BEHIND: 3, ExitCode.INTERNAL: 4}.get(ExitCode(code), 2)


def worst(*codes: int) -> ExitCode:
    """The exit status that sums up several outcomes (0 for none).

    The most severe wins: an internal error (70) over something left behind
    (12) over any other error over partial (1) over success; between two
    errors of the same severity, the first given.
    """
    ranked = [ExitCode(c) for c in codes]
    return max(ranked, key=_severity, default=ExitCode.OK)


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


class MissingChunkError(IntegrityError):
    """A backup names a chunk that its repository does not hold."""

    exit_code = ExitCode.MISSING_DATA


class TruncatedError(IntegrityError):
    """Data that ends too early (an image cut short): incomplete rather than corrupt."""


class NotARepositoryError(VmsnapError):
    """The folder has no repository ``config``: never ``vmsnap init``-ed, or
    not mounted (an empty mount point), or a format-2 backup folder."""

    exit_code = ExitCode.NOT_A_REPOSITORY


class RepositoryVersionError(VmsnapError):
    """A repository whose config says a format version (or chunking, digest)
    this vmsnap does not know: written by a newer vmsnap."""

    exit_code = ExitCode.REPOSITORY_VERSION


class AccessDeniedError(DestinationError):
    """The object store refused us: unknown key, wrong secret, no permission."""

    exit_code = ExitCode.ACCESS_DENIED


class UnreachableError(DestinationError):
    """The object store's endpoint did not answer, after boto3's retries."""

    exit_code = ExitCode.UNREACHABLE


class LockedError(VmsnapError):
    exit_code = ExitCode.LOCKED


class LockLostError(LockedError):
    """A run could not renew its repository lock for too long: another host
    may think it dead, so it stops before relying on the lock."""


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
