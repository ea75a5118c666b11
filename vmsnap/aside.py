"""A file written aside and renamed into place when complete.

``NAME`` is written as ``.NAME.<pid>.partial`` beside it, held under an
exclusive ``flock`` while it is written, and renamed onto ``NAME`` once it is
complete and on disk; on any error (or Ctrl-C) it is removed.  A partial that
a killed run left (SIGKILL, OOM, power loss) blocks nothing: the next run to
the same ``NAME`` removes every partial whose writer is gone (its process no
longer exists and nobody holds its lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from vmsnap import store
from vmsnap.errors import DestinationError

log = logging.getLogger(__name__)


def partial_name(path: Path, pid: int | None = None) -> Path:
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.partial")


def _writer_pid(path: Path, candidate: str) -> int | None:
    """The pid in ``candidate`` if it is one of ``path``'s partials."""
    pattern = rf"\.{re.escape(path.name)}\.([0-9]{{1,10}})\.partial"
    found = re.fullmatch(pattern, candidate)
    return int(found.group(1)) if found else None


def _alive(pid: int) -> bool:
    """Another process with this pid exists (ours cannot be the writer yet)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_if_unlocked(partial: Path) -> bool:
    try:
        fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # its writer is alive (in another pid namespace, on another host)
    else:
        partial.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def sweep(path: Path) -> list[Path]:
    """Remove the partials of ``path`` that dead runs left; the ones removed."""
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []  # the write itself will say what is wrong with the folder
    gone = []
    for name in names:
        pid = _writer_pid(path, name)
        if pid is not None and not _alive(pid) and _remove_if_unlocked(path.parent / name):
            log.warning("removed %s, left by a run that died", path.parent / name)
            gone.append(path.parent / name)
    return gone


def _keep_mode_of(fd: int, old: os.stat_result) -> None:
    """The replacement gets the mode (and, as root, the owner) of the file it replaces."""
    os.fchmod(fd, stat.S_IMODE(old.st_mode))
    with contextlib.suppress(PermissionError):
        os.fchown(fd, old.st_uid, old.st_gid)


@contextmanager
def written_aside(path: Path, *, replace: os.stat_result | None = None) -> Iterator[BinaryIO]:
    """A new file at ``path`` (0600), or with ``replace`` (the stat of the
    regular file there) one that takes its place: the old file stays as it was
    until the new one is complete."""
    sweep(path)
    temp = partial_name(path)
    fd = store.open_new(temp)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if replace is not None:
            _keep_mode_of(fd, replace)
        with os.fdopen(fd, "wb", closefd=False) as out:
            yield out
            out.flush()
            os.fsync(fd)
        _publish(temp, path, replace=replace is not None)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _publish(temp: Path, path: Path, *, replace: bool) -> None:
    if not replace and (path.exists() or path.is_symlink()):  # appeared while we wrote
        raise DestinationError(f"{path} exists; refusing to overwrite it")
    os.rename(temp, path)
    store.fsync_dir(path.parent)
