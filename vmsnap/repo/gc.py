"""Garbage collection, for ``prune`` to wire: delete the chunks that no
manifest names, after prune has deleted the manifests its policy drops.

It reads every manifest first and refuses to delete anything when one of
them cannot be read (what it names is unknown).  Before the first delete it
writes a new ``epoch``, so that every host's chunk index is rebuilt instead
of trusting chunks that are gone.  Killed at any point, it has deleted only
chunks that no manifest needs.  Temporary objects older than a day (left by
a killed writer) go too, and so do the objects of an unpublished backup (a
``backups/<guest>/<time>/`` holding no manifest.json, left by a killed
backup) whose time is more than a day ago.  ``dry_run`` deletes nothing,
and may leave out manifests (the ones a prune would delete first) to say
what a collection after them would free.  It must not run while a backup
writes to the same repository, from any host: prune holds the repository's
exclusive lock (vmsnap.repo.locks) around it, and it checks that lock before
each batch of deletes.
"""

from __future__ import annotations

import calendar
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass

from vmsnap import faults, store
from vmsnap.errors import IntegrityError
from vmsnap.repo import layout
from vmsnap.repo.locks import Held
from vmsnap.repo.refs import load
from vmsnap.repo.repository import Repository

TEMP_AGE = 86400  # seconds
_BATCH = 1000


@dataclass(frozen=True)
class GcReport:
    dry_run: bool
    manifests: int
    chunks: int  # chunks the repository held
    garbage: int  # chunks no manifest names (deleted unless dry_run)
    garbage_bytes: int  # their stored size
    temporaries: int  # temporary objects of killed writers, removed
    orphans: tuple[str, ...] = ()  # unpublished backups' prefixes (removed unless dry_run)


@dataclass(frozen=True)
class _Backups:
    """``backups/`` in one listing: the manifests, and the unpublished prefixes."""

    manifests: list[str]
    orphans: dict[str, list[str]]  # prefix -> its object names


def _list_backups(repo: Repository) -> _Backups:
    prefixes: dict[str, list[str]] = {}
    for listed in repo.backend.list(layout.BACKUPS):
        parts = listed.name.split("/")
        if len(parts) >= 4:  # backups/<guest>/<time>/<object>
            prefixes.setdefault("/".join(parts[:3]) + "/", []).append(listed.name)
    manifests = [n for names in prefixes.values() for n in names if _is_manifest(n)]
    orphans = {p: ns for p, ns in prefixes.items() if not any(_is_manifest(n) for n in ns)}
    return _Backups(sorted(manifests), orphans)


def _is_manifest(name: str) -> bool:
    return name.count("/") == 3 and name.endswith("/" + layout.MANIFEST)


def _old(prefix: str, now: float) -> bool:
    """An unpublished backup's prefix whose time is more than TEMP_AGE ago."""
    stamp = prefix.rstrip("/").rsplit("/", 1)[-1]
    if not store.is_stamp(stamp):
        return False
    when = calendar.timegm(time.strptime(stamp[:16], store.STAMP_FORMAT))
    return when < now - TEMP_AGE


def referenced(repo: Repository, names: list[str]) -> set[str]:
    """Every chunk id the manifests ``names`` name; any unreadable manifest
    stops the collection."""
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
    return needed


def _check(held: Held | None) -> None:
    if held is not None:
        held.check()  # a lock that may look stale elsewhere: delete nothing more


def _delete(repo: Repository, names: list[str], held: Held | None) -> None:
    """Delete the garbage: the first chunk alone (where a test may kill the
    collection), then a thousand at a time (one request each in a bucket),
    checking the exclusive lock before each batch."""
    many = getattr(repo.backend, "delete_many", None)
    repo.backend.delete(names[0])
    faults.point("collecting")
    for start in range(1, len(names), _BATCH):
        _check(held)
        batch = names[start : start + _BATCH]
        if many is not None:
            many(batch)
        else:
            for name in batch:
                repo.backend.delete(name)


def collect(
    repo: Repository,
    *,
    dry_run: bool,
    without: Collection[str] = (),
    now: float | None = None,
    held: Held | None = None,
) -> GcReport:
    """Collect the garbage; with ``dry_run``, as if the manifests ``without``
    were deleted first, and delete nothing."""
    listing = _list_backups(repo)
    names = [n for n in listing.manifests if n not in without]
    needed = referenced(repo, names)
    dropped = {n.rsplit("/", 1)[0] + "/" for n in without}
    moment = time.time() if now is None else now
    orphans = sorted(p for p in listing.orphans if p not in dropped and _old(p, moment))
    garbage, garbage_bytes, total = [], 0, 0
    for listed in repo.backend.list(layout.CHUNKS):
        chunk_id = layout.chunk_of(listed.name)
        total += chunk_id is not None
        if chunk_id is not None and chunk_id not in needed:
            garbage.append(listed.name)
            garbage_bytes += listed.size
    if not dry_run and garbage:
        _check(held)
        repo.backend.put(layout.EPOCH, (secrets.token_hex(16) + "\n").encode())
        _delete(repo, garbage, held)
    if not dry_run:
        for prefix in orphans:
            for name in listing.orphans[prefix]:
                repo.backend.delete(name)
    sweep = getattr(repo.backend, "remove_temporaries", None)  # a local folder's own
    temporaries = sweep(TEMP_AGE) if sweep is not None and not dry_run else 0
    return GcReport(
        dry_run, len(names), total, len(garbage), garbage_bytes, temporaries, tuple(orphans)
    )
