"""Naming a backup in a repository, and finding it.

A backup is ``backups/<guest>/<UTC time>/`` in a repository, published when its
``manifest.json`` exists (it is written last).  A user names one in two ways:

- ``--dest REPO NAME [--at TIME]``: the newest backup of guest NAME, or the one
  whose time is (or starts with) TIME; works for any backend;
- a local folder, ``REPO/backups/<guest>/<time>`` (and, where a command takes
  several, ``REPO/backups/<guest>`` or ``REPO`` itself).

Everything here reads only: listing names, loading a manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from vmsnap import store
from vmsnap.errors import NotFoundError
from vmsnap.repo import layout
from vmsnap.repo import manifest as rmanifest
from vmsnap.repo.backend import ObjectMissing
from vmsnap.repo.manifest import RepoManifest
from vmsnap.repo.repository import Repository, open_local

DOMAIN_XML = "domain.xml"
VERIFIED = "verified.json"


@dataclass(frozen=True)
class BackupRef:
    """One backup of a repository: its guest (unescaped) and its time."""

    repo: Repository
    guest: str
    stamp: str

    @property
    def prefix(self) -> str:
        """The object names of this backup start with this."""
        return f"{layout.guest_prefix(self.guest)}{self.stamp}/"

    @property
    def manifest_name(self) -> str:
        return self.prefix + layout.MANIFEST

    @property
    def domain_xml_name(self) -> str:
        return self.prefix + DOMAIN_XML

    @property
    def verified_name(self) -> str:
        return self.prefix + VERIFIED

    @property
    def label(self) -> str:
        """How messages name it: the folder of a local repository, the URL of a remote one."""
        return f"{self.repo.location}/{self.prefix.rstrip('/')}"

    def load(self) -> RepoManifest:
        return load(self.repo, self.manifest_name)

    def domain_xml(self) -> bytes:
        try:
            return self.repo.backend.get(self.domain_xml_name)
        except ObjectMissing:
            raise NotFoundError(f"{self.label}: its domain.xml is missing") from None


def load(repo: Repository, name: str) -> RepoManifest:
    where = f"{repo.location}/{name}"
    try:
        data = repo.backend.get(name)
    except ObjectMissing:
        raise NotFoundError(f"{where} is missing") from None
    return rmanifest.parse(data, where)


def backups(repo: Repository, guest: str | None = None) -> list[BackupRef]:
    """The published backups (of ``guest``, or of every guest), by guest, oldest first."""
    prefix = layout.guest_prefix(guest) if guest is not None else layout.BACKUPS
    found = []
    for listed in repo.backend.list(prefix):
        parts = listed.name[len(layout.BACKUPS) :].split("/")
        if len(parts) == 3 and parts[2] == layout.MANIFEST and store.is_stamp(parts[1]):
            found.append(BackupRef(repo, unquote(parts[0]), parts[1]))
    return sorted(found, key=lambda r: (r.guest, _order(r.stamp)))


def _order(stamp: str) -> tuple[str, int]:
    """Time order; ``-2`` (a second backup in the same second) after the first."""
    base, _sep, n = stamp.partition("-")
    return base, int(n or 1)


def guests(repo: Repository) -> list[str]:
    """The guests that have at least one published backup, sorted."""
    return sorted({r.guest for r in backups(repo)})


def find(repo: Repository, guest: str, at: str | None = None) -> BackupRef:
    """The newest backup of ``guest``; with ``at``, the one whose time is ``at``,
    else the newest whose time starts with it."""
    refs = [r for r in backups(repo, guest) if at is None or r.stamp.startswith(at)]
    exact = [r for r in refs if r.stamp == at]
    refs = exact or refs
    if not refs:
        when = f" at {at}" if at else ""
        raise NotFoundError(
            f"{repo.location}: no backup of {guest}{when}",
            hint=f"vmsnap backups --dest {repo.location} lists them",
        )
    return refs[-1]


@dataclass(frozen=True)
class Located:
    """What a local path names: a repository, one guest's backups in it, or one backup."""

    repo: Repository
    guest: str | None = None
    stamp: str | None = None

    def refs(self) -> list[BackupRef]:
        """The backups the path names (one, a guest's, or all)."""
        if self.stamp is not None:
            assert self.guest is not None
            return [find_exact(self.repo, self.guest, self.stamp)]
        return backups(self.repo, self.guest)


def find_exact(repo: Repository, guest: str, stamp: str) -> BackupRef:
    ref = BackupRef(repo, guest, stamp)
    if not repo.backend.exists(ref.manifest_name):
        raise NotFoundError(
            f"{ref.label} is not a published backup (no manifest.json: "
            "an interrupted backup, or one still being written)",
            hint="use a published one: vmsnap backups lists them",
        )
    return ref


def locate(path: Path) -> Located:
    """A local path: ``REPO``, ``REPO/backups``, ``REPO/backups/<guest>`` or
    ``REPO/backups/<guest>/<time>``.  Anything else is not a repository (15)."""
    if not path.exists():
        raise NotFoundError(f"{path}: no such file or folder")
    absolute = path.resolve()
    for depth in range(4):
        if depth >= len(absolute.parts):
            break
        root = absolute.parents[depth - 1] if depth else absolute
        below = absolute.parts[len(root.parts) :]
        if below[:1] not in ((), ("backups",)) or not (root / layout.CONFIG).is_file():
            continue
        repo = open_local(root)
        rest = below[1:]
        guest = unquote(rest[0]) if rest else None
        return Located(repo, guest, rest[1] if len(rest) > 1 else None)
    return Located(open_local(absolute))  # raises: not a repository, with its hint
