"""What a destination holds: each guest's backups, their manifests, sizes and
the result of their last ``vmsnap verify`` (``verified.json``); and where
``verify`` finds backups under a path.  The read side of the layout that
``store`` writes.

One policy for symbolic links, for every command that reads a destination: a
path the user names is taken as given, but a link found inside it (a guest's
folder, a backup folder) is never followed, and a warning names it; so nothing
outside is ever listed, verified, recorded or pruned.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

from vmsnap import manifest, store
from vmsnap.errors import DestinationError, IntegrityError, NotFoundError
from vmsnap.manifest import Manifest

log = logging.getLogger(__name__)

VERIFIED = "verified.json"
VERIFIED_OK = "OK"
LINK_POLICY = "vmsnap never follows links inside a destination"


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
    """The folders in ``folder``; a link to one is left out, with a warning."""
    try:
        children = sorted(folder.iterdir())
    except OSError as exc:
        raise NotFoundError(f"cannot list {folder}: {exc.strerror}") from exc
    for link in (p for p in children if p.is_symlink() and p.is_dir()):
        log.warning("%s: ignored, a symbolic link (%s)", link, LINK_POLICY)
    return [p for p in children if p.is_dir() and not p.is_symlink()]


def guest_folders(dest: Path, domains: list[str] | None = None) -> list[Path]:
    """The guests' folders in ``dest``: all of them, or the named guests' (each must exist)."""
    if not dest.is_dir():
        raise NotFoundError(f"destination {dest} does not exist or is not a folder")
    if not domains:
        return _real_dirs(dest)
    folders = []
    for name in domains:
        folder = store.guest_dir(dest, name)
        if folder.is_symlink():
            raise NotFoundError(f"{folder} is a symbolic link, not followed ({LINK_POLICY})")
        if not folder.is_dir():
            raise NotFoundError(f"no backups of {name} in {dest}")
        folders.append(folder)
    return folders


def scan_guest(folder: Path) -> GuestFolder:
    backups, partials = [], []
    for child in _real_dirs(folder):
        if child.name.endswith(store.PARTIAL_SUFFIX):
            partials.append(child)
        elif store.is_stamp(child.name):
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


# ---------------------------------------------------------------- finding backups (verify)

_Kind = Literal["backup", "partial"] | None


def find_backups(path: Path) -> list[Path]:
    """The published backup folders at ``path``: a backup folder, a guest's
    folder, or a whole destination.  Sorted; never a ``.partial`` folder."""
    return _scan(path)[0]


def find_partials(path: Path) -> list[Path]:
    """The unpublished ``.partial`` folders (interrupted runs) at ``path``."""
    return _scan(path)[1]


def _scan(path: Path) -> tuple[list[Path], list[Path]]:
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise NotFoundError(f"{path} is not a folder: give a backup, a guest's folder or a dest")
    kind = _kind(path)
    if kind is not None:
        return ([path], []) if kind == "backup" else ([], [path])
    found: dict[str, list[Path]] = {"backup": [], "partial": []}
    for child in _real_dirs(path):
        # a destination's children are guest folders: look one level further
        for folder in [child] if _kind(child) else _real_dirs(child):
            if kind := _kind(folder):
                found[kind].append(folder)
    return sorted(found["backup"]), sorted(found["partial"])


def _kind(folder: Path) -> _Kind:
    """A backup holds a manifest, or (if the manifest was lost) is named like one
    and holds only files; a ``.partial`` folder is never a backup."""
    if folder.name.endswith(store.PARTIAL_SUFFIX):
        return "partial"
    if (folder / store.MANIFEST).exists():
        return "backup"
    if store.is_stamp(folder.name) and not _has_subfolders(folder):
        return "backup"
    return None


def _has_subfolders(folder: Path) -> bool:
    try:
        return any(p.is_dir() for p in folder.iterdir())
    except OSError as exc:
        raise NotFoundError(f"cannot list {folder}: {exc.strerror}") from exc


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
        "verified": manifest.created_text(now),
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
