"""The global run lock: one vmsnap run at a time on a host.

Held with flock on a file opened with O_NOFOLLOW (a planted symlink cannot
redirect it); a second run says who holds it (the pid its holder wrote), waits up to a
timeout (settable: --lock-wait), then fails clearly.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from vmsnap.errors import LockedError

LOCK_PATH = "/run/lock/vmsnap.lock"
DEFAULT_WAIT = 60.0

log = logging.getLogger("vmsnap")


def lock_path() -> str:
    return os.environ.get("VMSNAP_LOCK_FILE", LOCK_PATH)


def _open(path: str) -> int:
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockedError(f"lock file {path} is a symlink; refusing it") from exc
        raise LockedError(f"cannot open lock file {path}: {exc.strerror}") from exc


def set_wait(seconds: float | None) -> None:
    """How long a run waits for the lock (None: DEFAULT_WAIT).  The CLI sets it
    once per run from --lock-wait or $VMSNAP_LOCK_WAIT, for every job's lock."""
    global _wait  # noqa: PLW0603 - one run's setting, made at the edge
    _wait = seconds


_wait: float | None = None


def holder(fd: int) -> str:
    """Who holds the lock, from the pid its holder wrote: "pid 1234", or "" if unknown."""
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f"pid {pid}" if pid.isdigit() else ""


def _acquire(fd: int, path: str, wait: float) -> None:
    """Take the lock, saying once who holds it while waiting up to ``wait`` s."""
    deadline = time.monotonic() + wait
    said = False
    while not _try_lock(fd):
        who = holder(fd)
        if time.monotonic() >= deadline:
            raise _held(path, who, wait)
        if not said:
            log.warning("waiting up to %.0f s for the run lock %s, held by %s",
                        wait, path, who or "another run")  # fmt: skip
            said = True
        time.sleep(0.2)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _held(path: str, who: str, wait: float) -> LockedError:
    by = f" ({who})" if who else ""
    message = f"another vmsnap run{by} holds {path} (waited {wait:.0f} s)"
    return LockedError(message, hint="--lock-wait SECONDS waits longer")


@contextmanager
def run_lock(wait: float | None = None, path: str | None = None) -> Iterator[None]:
    path = path or lock_path()
    if wait is None:
        wait = DEFAULT_WAIT if _wait is None else _wait
    fd = _open(path)
    try:
        _acquire(fd, path, wait)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
