"""What a destination holds: each guest's backups, their manifests, sizes and
the result of their last ``vmsnap verify`` (``verified.json``).

Only real folders count: a symbolic link (a guest's folder, a backup folder)
is never followed, so nothing outside ``DEST`` is ever listed or pruned.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from vmsnap import manifest, store
from vmsnap.errors import DestinationError, IntegrityError, NotFoundError
from vmsnap.manifest import Manifest

log = logging.getLogger(__name__)

VERIFIED = "verified.json"
VERIFIED_OK = "OK"


@dataclass(frozen=True)
class Verified:
    """The last ``vmsnap verify`` of a backup: when, and its status (OK, CORRUPT,
    MISSING or INCOMPLETE)."""

    at: str
    status: str

    @property
    def ok(self) -> bool:
        return self.status == VERIFIED_OK


@dataclass(frozen=True)
class Stored:
    """One published backup folder.  ``manifest`` is None when it could not be
    trusted; ``problem`` says why."""

    directory: Path
    guest: str
    manifest: Manifest | None
    problem: str | None
    verified: Verified | None

    @property
    def good(self) -> bool:
        """Counts for retention: a sealed manifest, and no failed verify."""
        return self.manifest is not None and (self.verified is None or self.verified.ok)

    @property
    def created(self) -> datetime | None:
        return manifest.created_time(self.manifest.created) if self.manifest else None


@dataclass(frozen=True)
class GuestFolder:
    """``DEST/<guest>/``: its backups (oldest first) and ``.partial`` folders."""

    folder: Path
    guest: str
    backups: tuple[Stored, ...]
    partials: tuple[Path, ...]


def _real_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError as exc:
        raise NotFoundError(f"cannot list {folder}: {exc.strerror}") from exc


def guest_folders(dest: Path, domains: list[str] | None = None) -> list[Path]:
    """The guests' folders in ``dest``: all of them, or the named guests' (each must exist)."""
    if not dest.is_dir():
        raise NotFoundError(f"destination {dest} does not exist or is not a folder")
    if not domains:
        return _real_dirs(dest)
    folders = []
    for name in domains:
        folder = store.guest_dir(dest, name)
        if not folder.is_dir() or folder.is_symlink():
            raise NotFoundError(f"no backups of {name} in {dest}")
        folders.append(folder)
    return folders


def scan_guest(folder: Path) -> GuestFolder:
    backups, partials = [], []
    for child in _real_dirs(folder):
        if child.name.endswith(store.PARTIAL_SUFFIX):
            partials.append(child)
        elif manifest.is_stamp(child.name):
            backups.append(_stored(child))
    backups.sort(key=lambda b: (b.created or datetime.min.replace(tzinfo=UTC), b.directory.name))
    return GuestFolder(folder, unquote(folder.name), tuple(backups), tuple(partials))


def scan(dest: Path, domains: list[str] | None = None) -> list[GuestFolder]:
    return [scan_guest(f) for f in guest_folders(dest, domains)]


def _stored(directory: Path) -> Stored:
    guest = unquote(directory.parent.name)
    try:
        found = manifest.load(directory)
    except (IntegrityError, NotFoundError) as exc:
        return Stored(directory, guest, None, str(exc), read_verified(directory))
    return Stored(directory, found.domain_name, found, None, read_verified(directory))


# ---------------------------------------------------------------- verified.json


def read_verified(directory: Path) -> Verified | None:
    """The recorded verify result; None when there is none or it is unreadable."""
    try:
        doc = json.loads((directory / VERIFIED).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    at, status = doc.get("verified"), doc.get("status")
    if not isinstance(at, str) or not isinstance(status, str):
        return None
    return Verified(at=at, status=status)


def record_verified(directory: Path, status: str, now: float) -> None:
    """Write ``verified.json`` next to the manifest (not under its seal), through a
    temporary file.  Best effort: a read-only destination only gets a warning."""
    doc = {
        "verified": datetime.fromtimestamp(now, UTC).strftime(manifest.CREATED_FORMAT),
        "status": status,
    }
    path, temp = directory / VERIFIED, directory / f".{VERIFIED}.tmp"
    try:
        if temp.exists() or temp.is_symlink():
            temp.unlink()
        store.write_json(temp, doc)
        os.rename(temp, path)
    except (OSError, DestinationError) as exc:
        log.warning("cannot record the verify result in %s: %s", path, exc)
