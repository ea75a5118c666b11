"""The backup folder: ``DEST/<guest>/<UTC time>/`` with images, domain.xml and
manifest.json.

A backup is written into ``<UTC time>.partial`` and renamed into place only
when complete, so an interrupted run never leaves anything that looks good.
Folders are 0700 and files 0600; names from libvirt are escaped so that no
guest name can climb out of the destination.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vmsnap.errors import DestinationError, ExistsError, IntegrityError

PARTIAL_SUFFIX = ".partial"
MANIFEST = "manifest.json"
DOMAIN_XML = "domain.xml"
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


def check_destination(dest: Path) -> None:
    """``dest`` must be an existing, writable directory (not a symlink's target
    chosen by someone else: we only refuse a dangling or non-directory path)."""
    if not dest.exists():
        raise DestinationError(f"destination {dest} does not exist", hint="create it first")
    if not dest.is_dir():
        raise DestinationError(f"destination {dest} is not a directory")
    if not os.access(dest, os.W_OK | os.X_OK):
        raise DestinationError(f"destination {dest} is not writable")


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if path.is_symlink() or not path.is_dir():
            raise DestinationError(f"{path} exists and is not a directory") from None
    except OSError as exc:
        raise DestinationError(f"cannot create {path}: {exc.strerror}") from exc


def guest_dir(dest: Path, guest: str) -> Path:
    return dest / safe_component(guest)


def remove_partials(folder: Path) -> list[Path]:
    """Remove unpublished backup folders a dead run left in a guest's folder."""
    if not folder.is_dir():
        return []
    gone = [p for p in folder.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return gone


def require_published(folder: Path) -> None:
    """What readers check first: a ``.partial`` folder is unpublished (an
    interrupted backup, or one still being written) and no backup at all,
    whatever its manifest says (vmsnap-format(5))."""
    for path in (folder, folder.resolve()):
        if path.name.endswith(PARTIAL_SUFFIX):
            raise IntegrityError(
                f"{folder} is an unpublished backup (a {PARTIAL_SUFFIX} folder: interrupted, "
                "or still being written)",
                hint="use a published one: vmsnap backups lists them",
            )


def create_staging(dest: Path, guest: str, stamp: str) -> Path:
    folder = guest_dir(dest, guest)
    _mkdir(folder)
    staging = folder / f"{stamp}{PARTIAL_SUFFIX}"
    _mkdir(staging)
    return staging


def final_path(staging: Path) -> Path:
    base = staging.name[: -len(PARTIAL_SUFFIX)]
    candidate = staging.parent / base
    n = 1
    while candidate.exists():
        n += 1
        candidate = staging.parent / f"{base}-{n}"
    return candidate


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staging: Path) -> Path:
    """Rename a complete backup folder into place, durably."""
    final = final_path(staging)
    fsync_dir(staging)
    os.rename(staging, final)
    fsync_dir(final.parent)
    return final


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


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


def write_json(path: Path, document: dict[str, Any]) -> None:
    write_file(path, (json.dumps(document, indent=2, sort_keys=False) + "\n").encode())


def destination_error(exc: OSError, path: Path) -> DestinationError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DestinationError(f"destination full while writing {path}")
    return DestinationError(f"cannot write {path}: {exc.strerror}")
