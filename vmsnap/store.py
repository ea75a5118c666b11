"""Files written safely, and the names of backups: a guest's name as one
harmless path component, a backup's UTC time.

New files are 0600, created exclusively, never through a link, flushed to
disk; a full disk is said as such.  Names from libvirt are escaped so that no
guest name can climb out of the repository.
"""

from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path
from urllib.parse import quote

from vmsnap.errors import DestinationError, ExistsError

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"  # a backup folder's name: its UTC time
_STAMP = re.compile(r"\d{8}T\d{6}Z(-\d+)?")


def safe_component(name: str) -> str:
    """A guest or disk name as one harmless path component (reversible)."""
    text = quote(name, safe="+,=@_-")
    if text.startswith((".", "-")):
        text = "%" + f"{ord(text[0]):02X}" + text[1:]
    return text or "%00"


def timestamp(now: float | None = None) -> str:
    return time.strftime(STAMP_FORMAT, time.gmtime(now))


def is_stamp(name: str) -> bool:
    """A backup folder's name: its UTC time, ``20261127T042319Z`` (``-2`` on a clash)."""
    return bool(_STAMP.fullmatch(name))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_new(path: Path) -> int:
    """Create ``path`` for writing, 0600, refusing to follow or reuse anything."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o600)
    except OSError as exc:
        raise DestinationError(f"cannot create {path}: {exc.strerror}") from exc


def check_new_file(path: Path) -> None:
    """Before a job starts: ``path`` can be created by :func:`write_file` when
    it ends (it does not exist, its folder does and is writable)."""
    if path.exists() or path.is_symlink():
        raise ExistsError(f"{path} exists; refusing to overwrite it")
    folder = path.parent
    if not folder.is_dir():
        raise DestinationError(f"cannot create {path}: no such folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DestinationError(f"cannot create {path}: folder {folder} is not writable")


def write_file(path: Path, data: bytes) -> None:
    fd = open_new(path)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(data)
            out.flush()
            os.fsync(fd)
    except OSError as exc:
        raise destination_error(exc, path) from exc
    finally:
        os.close(fd)


def destination_error(exc: OSError, path: Path) -> DestinationError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DestinationError(f"destination full while writing {path}")
    return DestinationError(f"cannot write {path}: {exc.strerror}")
