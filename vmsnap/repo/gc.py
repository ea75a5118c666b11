"""Garbage collection, for ``prune`` to wire: delete the chunks that no
manifest names, after prune has deleted the manifests its policy drops.

It reads every manifest first and refuses to delete anything when one of
them cannot be read (what it names is unknown).  Before the first delete it
writes a new ``epoch``, so that every host's chunk index is rebuilt instead
of trusting chunks that are gone.  Killed at any point, it has deleted only
chunks that no manifest needs.  Temporary objects older than a day (left by
a killed writer) go too.  It must not run while a backup writes to the same
repository: on one host the run lock sees to that.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from vmsnap import faults
from vmsnap.errors import IntegrityError
from vmsnap.repo import layout
from vmsnap.repo.refs import load
from vmsnap.repo.repository import Repository

TEMP_AGE = 86400  # seconds


@dataclass(frozen=True)
class GcReport:
    dry_run: bool
    manifests: int
    chunks: int  # chunks the repository held
    garbage: int  # chunks no manifest names (deleted unless dry_run)
    garbage_bytes: int  # their stored size
    temporaries: int  # temporary objects of killed writers, removed


def referenced(repo: Repository) -> tuple[int, set[str]]:
    """(number of manifests, every chunk id they name); any unreadable
    manifest stops the collection."""
    names = [
        listed.name
        for listed in repo.backend.list(layout.BACKUPS)
        if listed.name.endswith("/" + layout.MANIFEST)
    ]
    needed: set[str] = set()
    for name in names:
        try:
            m = load(repo, name)
        except IntegrityError as exc:
            raise IntegrityError(
                f"garbage collection stopped before deleting anything: {exc.message}",
                hint="repair or remove that manifest first",
            ) from exc
        for disk in m.disks:
            needed.update(disk.chunks)
    return len(names), needed


def collect(repo: Repository, *, dry_run: bool) -> GcReport:
    manifests, needed = referenced(repo)
    garbage, garbage_bytes, total = [], 0, 0
    for listed in repo.backend.list(layout.CHUNKS):
        chunk_id = layout.chunk_of(listed.name)
        total += chunk_id is not None
        if chunk_id is not None and chunk_id not in needed:
            garbage.append(listed.name)
            garbage_bytes += listed.size
    if not dry_run and garbage:
        repo.backend.put(layout.EPOCH, (secrets.token_hex(16) + "\n").encode())
        for n, name in enumerate(garbage):
            repo.backend.delete(name)
            if n == 0:
                faults.point("collecting")  # a test may stop (and kill) a collection here
    sweep = getattr(repo.backend, "remove_temporaries", None)  # a local folder's own
    temporaries = sweep(TEMP_AGE) if sweep is not None and not dry_run else 0
    return GcReport(dry_run, manifests, total, len(garbage), garbage_bytes, temporaries)
