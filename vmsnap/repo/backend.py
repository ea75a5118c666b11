"""Where a repository's objects live: a small interface made for object stores.

An object is a name (see :mod:`vmsnap.repo.layout`) and bytes.  Objects are
written whole and at once (``put`` is atomic: a reader sees all of it or
nothing), never appended to, never renamed; the interface has no rename, no
append and no links, so that an S3 bucket is a second backend, not a rewrite.
:class:`LocalBackend` (a folder) writes each object under a temporary dotted
name, fsyncs it, renames it into place and fsyncs the folder.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

from vmsnap import store
from vmsnap.errors import IntegrityError, NotFoundError
from vmsnap.repo.layout import check_name

TEMP_SUFFIX = ".tmp"


class Listed(NamedTuple):
    """An object in a listing: its name and size (object stores list both)."""

    name: str
    size: int
    modified: float = 0.0  # seconds since the epoch, by the store's clock


class ObjectMissing(NotFoundError):
    """``get`` of a name the backend does not hold."""


class Backend(Protocol):
    """Named, immutable objects."""

    location: str  # for messages: a path or a URL
    remote: bool  # a request costs a round trip: list once rather than ask per object

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``, atomically (replacing an object of the same name)."""

    def get(self, name: str) -> bytes:
        """The object's bytes; :class:`ObjectMissing` if there is none."""

    def exists(self, name: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[Listed]:
        """Every object whose name starts with ``prefix``, in no particular order."""

    def delete(self, name: str) -> None:
        """Remove the object; one that is already gone is not an error."""


class LocalBackend:
    """A folder: each object a file at its name; folders made as needed (0700,
    files 0600)."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _path(self, name: str) -> Path:
        check_name(name)
        return self.root / name

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        self._folders(path.parent)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}{TEMP_SUFFIX}")
        try:
            with os.fdopen(store.open_new(temp), "wb") as out:  # 0600, O_EXCL
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.rename(temp, path)
        except OSError as exc:  # a full disk names the object, not its temporary name
            temp.unlink(missing_ok=True)
            raise store.destination_error(exc, path) from exc
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        store.fsync_dir(path.parent)

    def _folders(self, folder: Path) -> None:
        """Make ``folder`` and its missing parents below the root, durably."""
        if folder.is_dir() or folder == self.root:
            return
        self._folders(folder.parent)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            return
        except OSError as exc:
            raise store.destination_error(exc, folder) from exc
        store.fsync_dir(folder.parent)

    def get(self, name: str) -> bytes:
        path = self._path(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ObjectMissing(f"{self.location}: no object {name}") from None
        except OSError as exc:
            raise IntegrityError(f"{path}: cannot read it: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def list(self, prefix: str) -> Iterator[Listed]:
        folder, _sep, _rest = prefix.rpartition("/")
        top = self.root / folder if folder else self.root
        for listed in _walk(top, folder):
            if listed.name.startswith(prefix):
                yield listed

    def remove_temporaries(self, max_age: float) -> int:
        """Remove the temporary files of writers killed mid-put, older than
        ``max_age`` seconds (a live writer's is seconds old); how many."""
        limit = time.time() - max_age
        old = [p for p in self.root.rglob(f".*{TEMP_SUFFIX}") if p.stat().st_mtime < limit]
        for path in old:
            path.unlink(missing_ok=True)
        return len(old)

    def delete(self, name: str) -> None:
        path = self._path(name)
        path.unlink(missing_ok=True)
        store.fsync_dir(path.parent)


def _walk(folder: Path, relative: str) -> Iterator[Listed]:
    """Object names below ``folder`` (dotted names, temporary ones, skipped),
    a folder at a time: memory stays bounded by one folder's entries."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        name = f"{relative}/{entry.name}" if relative else entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), name)
        elif entry.is_file(follow_symlinks=False):
            info = entry.stat(follow_symlinks=False)
            yield Listed(name, info.st_size, info.st_mtime)
