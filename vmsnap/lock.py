"""The global run lock: one vmsnap run at a time on a host.

Held with flock on a file opened with O_NOFOLLOW (a planted symlink cannot
redirect it); a second run waits up to a timeout, then fails clearly.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from vmsnap.errors import LockedError

LOCK_PATH = "/run/lock/vmsnap.lock"
DEFAULT_WAIT = 60.0


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


@contextmanager
def run_lock(wait: float | None = None, path: str | None = None) -> Iterator[None]:
    path = path or lock_path()
    wait = DEFAULT_WAIT if wait is None else wait
    fd = _open(path)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockedError(
                        f"another vmsnap run holds {path} (waited {wait:.0f} s)"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
