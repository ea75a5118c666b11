"""What a repository holds: each guest's backups, their manifests, sizes and
the result of their last ``vmsnap verify`` (``verified.json``).

Sizes per backup: its logical size (the volumes'), what it stored new (the
manifest's ``new_bytes``/``stored_bytes``) and what is unique to it: the
stored bytes of the chunks that no other backup uses, which a prune of it
alone would free.  The stored size of each chunk comes from one listing of
``chunks/`` (object stores list sizes too), never a request per chunk.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vmsnap import manifest as sealed
from vmsnap.errors import DestinationError, IntegrityError, NotFoundError
from vmsnap.repo import layout, refs
from vmsnap.repo.backend import ObjectMissing
from vmsnap.repo.location import Dest, open_dest
from vmsnap.repo.manifest import RepoManifest
from vmsnap.repo.refs import BackupRef
from vmsnap.repo.repository import Repository

log = logging.getLogger(__name__)

VERIFIED_OK = "OK"
MAX_VERIFIED = 4096  # bytes: verified.json is a small object


@dataclass(frozen=True)
class Verified:
    """The last ``vmsnap verify`` of a backup: when, and its status (OK,
    CORRUPT or MISSING)."""

    at: str
    status: str

    @property
    def ok(self) -> bool:
        return self.status == VERIFIED_OK


@dataclass(frozen=True)
class Stored:
    """One published backup.  ``manifest`` is None when it could not be
    trusted; ``problem`` says why.  ``unique_bytes``: stored bytes of the
    chunks only this backup uses."""

    ref: BackupRef
    manifest: RepoManifest | None
    problem: str | None
    verified: Verified | None
    unique_bytes: int = 0

    @property
    def guest(self) -> str:
        return self.ref.guest

    @property
    def stamp(self) -> str:
        return self.ref.stamp

    @property
    def good(self) -> bool:
        """Counts for retention: a sealed manifest, and no failed verify."""
        return self.manifest is not None and (self.verified is None or self.verified.ok)

    @property
    def created(self) -> datetime | None:
        return sealed.created_time(self.manifest.created) if self.manifest else None


@dataclass(frozen=True)
class GuestBackups:
    """One guest's published backups in a repository, oldest first."""

    repo: Repository
    guest: str
    backups: tuple[Stored, ...]

    @property
    def label(self) -> str:
        """``REPO/backups/<guest>``, for messages."""
        return f"{self.repo.location}/{layout.guest_prefix(self.guest).rstrip('/')}"


def open_repository(dest: Dest) -> Repository:
    """The repository at ``dest``: not one is status 15, a newer one 16."""
    return open_dest(dest)


def guest_refs(repo: Repository, guests: list[str] | None) -> dict[str, list[BackupRef]]:
    """Every guest's backups, or the named guests' (each must have one)."""
    every = refs.backups(repo)
    by_guest: dict[str, list[BackupRef]] = {}
    for ref in every:
        by_guest.setdefault(ref.guest, []).append(ref)
    if not guests:
        return by_guest
    for name in guests:
        if name not in by_guest:
            raise NotFoundError(
                f"no backups of {name} in {repo.location}",
                hint=f"vmsnap backups --dest {repo.location} lists them",
            )
    return {name: by_guest[name] for name in dict.fromkeys(guests)}


def scan(repo: Repository, guests: list[str] | None = None) -> list[GuestBackups]:
    """The backups of ``guests`` (all by default), with their unique sizes
    counted against every backup of the repository."""
    wanted = guest_refs(repo, guests)
    every = [r for rs in guest_refs(repo, None).values() for r in rs]
    loaded = {r.manifest_name: _load(r) for r in every}
    users = Counter(c for m, _p in loaded.values() if m for c in _chunk_set(m))
    sizes = chunk_sizes(repo)
    found = []
    for guest, guest_refs_ in wanted.items():
        backups = tuple(_stored(r, loaded[r.manifest_name], users, sizes) for r in guest_refs_)
        found.append(GuestBackups(repo, guest, backups))
    return found


def _load(ref: BackupRef) -> tuple[RepoManifest | None, str | None]:
    try:
        return ref.load(), None
    except (IntegrityError, NotFoundError) as exc:
        return None, str(exc)


def _chunk_set(m: RepoManifest) -> set[str]:
    return {c for d in m.disks for c in d.chunks}


def chunk_sizes(repo: Repository) -> dict[str, int]:
    """Chunk id -> stored (compressed) size, from one listing."""
    sizes = {}
    for listed in repo.backend.list(layout.CHUNKS):
        if (chunk_id := layout.chunk_of(listed.name)) is not None:
            sizes[chunk_id] = listed.size
    return sizes


def _stored(
    ref: BackupRef,
    loaded: tuple[RepoManifest | None, str | None],
    users: Counter[str],
    sizes: dict[str, int],
) -> Stored:
    m, problem = loaded
    unique = sum(sizes.get(c, 0) for c in _chunk_set(m) if users[c] == 1) if m else 0
    return Stored(ref, m, problem, read_verified(ref), unique)


# ---------------------------------------------------------------- verified.json


def read_verified(ref: BackupRef) -> Verified | None:
    """The recorded verify result; None when there is none or it is unreadable."""
    try:
        data = ref.repo.backend.get(ref.verified_name)
    except (ObjectMissing, IntegrityError):
        return None
    doc = _small_json(data)
    if doc is None:
        return None
    at, status = doc.get("verified"), doc.get("status")
    if not isinstance(at, str) or not isinstance(status, str):
        return None
    return Verified(at=at, status=status)


def _small_json(data: bytes) -> dict[str, Any] | None:
    if len(data) > MAX_VERIFIED:
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def record_verified(ref: BackupRef, status: str, now: float) -> None:
    """Write the backup's ``verified.json`` object (not under the manifest's
    seal).  Best effort: a read-only repository only gets a warning."""
    doc = {"verified": sealed.created_text(now), "status": status}
    try:
        ref.repo.backend.put(ref.verified_name, (json.dumps(doc) + "\n").encode())
    except (OSError, DestinationError) as exc:
        log.warning("cannot record the verify result of %s: %s", ref.label, exc)
