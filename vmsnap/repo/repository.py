"""Opening, creating and checking a repository: its ``config`` object.

``config`` is a JSON object written once, by ``vmsnap init``: the format and
its version, the repository's id (which names its local chunk index), the
chunk size, the chunk digest and the compression.  A reader refuses a folder
without one (:class:`NotARepositoryError`) and a version or setting it does
not know (:class:`RepositoryVersionError`) before it reads anything else.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmsnap.digest import CHUNK
from vmsnap.errors import (
    DestinationError,
    ExistsError,
    NotARepositoryError,
    RepositoryVersionError,
)
from vmsnap.repo.backend import Backend, LocalBackend, ObjectMissing
from vmsnap.repo.layout import CONFIG, EPOCH, Naming

FORMAT = "vmsnap-repository"
VERSION = 3
DIGEST = "sha256"
COMPRESSION = "zstd"
MAX_CONFIG = 64 << 10


@dataclass(frozen=True)
class RepoConfig:
    id: str  # 32 hex digits
    version: int
    chunk_size: int
    digest: str
    compression: str
    created: str

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "id": self.id,
            "chunk_size": self.chunk_size,
            "digest": self.digest,
            "compression": self.compression,
            "created": self.created,
        }


@dataclass(frozen=True)
class Repository:
    backend: Backend
    config: RepoConfig
    naming: Naming

    @property
    def location(self) -> str:
        return self.backend.location

    def epoch(self) -> str:
        """Changed by whatever deletes chunks: a chunk index of another epoch is stale."""
        try:
            return self.backend.get(EPOCH).decode("ascii", "replace").strip()
        except ObjectMissing:
            return "0"


def open_local(path: Path) -> Repository:
    """The repository in folder ``path``: a missing folder is a missing
    destination (9, as for every command), a folder without config is 15."""
    if not path.exists():
        raise DestinationError(
            f"repository {path} does not exist",
            hint=f"create one with: vmsnap init --dest {path}",
        )
    if not path.is_dir():
        raise NotARepositoryError(f"{path} is not a vmsnap repository: not a folder")
    return open_repository(LocalBackend(path))


def open_repository(backend: Backend) -> Repository:
    try:
        data = backend.get(CONFIG)
    except ObjectMissing:
        raise NotARepositoryError(
            f"{backend.location} is not a vmsnap repository (it has no config)",
            hint=f"create one with: vmsnap init --dest {backend.location}",
        ) from None
    config = parse_config(data, backend.location)
    return Repository(backend, config, Naming())


def parse_config(data: bytes, where: str) -> RepoConfig:
    doc = _config_document(data, where)
    version = doc.get("version")
    if type(version) is not int or version != VERSION:
        raise RepositoryVersionError(
            f"{where}: repository format version {version!r}; this vmsnap reads {VERSION}",
            hint="a newer vmsnap wrote it" if type(version) is int and version > VERSION else None,
        )
    wanted = {"chunk_size": CHUNK, "digest": DIGEST, "compression": COMPRESSION}
    for key, value in wanted.items():
        if doc.get(key) != value:
            raise RepositoryVersionError(
                f"{where}: {key} {doc.get(key)!r}; this vmsnap uses {value!r}"
            )
    ident, created = doc.get("id"), doc.get("created")
    if not isinstance(ident, str) or len(ident) != 32 or not _hex(ident):
        raise NotARepositoryError(f"{where}: config has no valid id")
    return RepoConfig(ident, version, CHUNK, DIGEST, COMPRESSION, str(created))


def _config_document(data: bytes, where: str) -> dict[str, Any]:
    broken = NotARepositoryError(f"{where}: its config is not a vmsnap repository config")
    if len(data) > MAX_CONFIG:
        raise broken
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise broken from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise broken
    return doc


def _hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def init_local(path: Path) -> Repository:
    """Make ``path`` (or the empty folder there) a new repository."""
    _empty_folder(path)
    return init_repository(LocalBackend(path))


def init_repository(backend: Backend) -> Repository:
    """Write a new ``config`` into an empty place (the caller checked it is)."""
    config = RepoConfig(
        id=uuid.uuid4().hex,
        version=VERSION,
        chunk_size=CHUNK,
        digest=DIGEST,
        compression=COMPRESSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    backend.put(CONFIG, (json.dumps(config.document(), indent=2) + "\n").encode())
    return Repository(backend, config, Naming())


def _empty_folder(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise DestinationError(f"{path} is a dangling symbolic link")
    if not path.exists():
        try:
            path.mkdir(mode=0o700)
        except OSError as exc:
            raise DestinationError(f"cannot create {path}: {exc.strerror}") from exc
        return
    if not path.is_dir():
        raise DestinationError(f"{path} exists and is not a folder")
    if (path / CONFIG).exists():
        raise ExistsError(f"{path} is a vmsnap repository already")
    with os.scandir(path) as entries:
        used = any(not e.name.startswith(".") and e.name != "lost+found" for e in entries)
    if used:
        raise DestinationError(
            f"{path} is not empty; a repository starts in an empty or new folder"
        )
