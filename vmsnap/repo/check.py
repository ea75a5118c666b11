"""Checking backups in a repository, for ``verify``: every chunk
the backups need exists (one listing of ``chunks/``, not a request per
chunk), and every chunk (``read_data``), or a random sample of them, decodes
to its digest.  A bad chunk is reported once, naming every backup that uses
it; a manifest that cannot be read is reported as such.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vmsnap.errors import IntegrityError, MissingChunkError, NotFoundError
from vmsnap.image import InOrder
from vmsnap.repo import layout, reader
from vmsnap.repo.refs import load
from vmsnap.repo.repository import Repository

MISSING = "missing"


@dataclass(frozen=True)
class BadChunk:
    chunk_id: str
    problem: str  # MISSING, or "chunk <id> is corrupt: <what is wrong with its bytes>"
    backups: tuple[str, ...]  # manifest names

    @property
    def missing(self) -> bool:
        return self.problem == MISSING


@dataclass(frozen=True)
class CheckReport:
    backups: tuple[str, ...]  # the manifests that were read
    chunks: int  # distinct chunks they need
    decoded: int  # chunks decoded and compared with their digest
    bad: tuple[BadChunk, ...] = ()
    bad_manifests: tuple[tuple[str, str], ...] = ()  # (name, error)

    @property
    def ok(self) -> bool:
        return not self.bad and not self.bad_manifests


@dataclass
class _Needed:
    """Chunk id -> (raw length, indexes of the backups that use it)."""

    chunks: dict[str, tuple[int, list[int]]] = field(default_factory=dict)
    backups: list[str] = field(default_factory=list)
    bad_manifests: list[tuple[str, str]] = field(default_factory=list)

    def read(self, repo: Repository, name: str) -> None:
        try:
            m = load(repo, name)
        except (IntegrityError, NotFoundError) as exc:
            self.bad_manifests.append((name, str(exc)))
            return
        self.backups.append(name)
        for disk in m.disks:
            for chunk_id, length in zip(disk.chunks, reader.chunk_lengths(disk), strict=True):
                self.chunks.setdefault(chunk_id, (length, []))[1].append(len(self.backups) - 1)

    def users(self, chunk_id: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.backups[i] for i in self.chunks[chunk_id][1]))


def check(
    repo: Repository,
    names: list[str],
    *,
    read_data: bool,
    sample: int = 0,
    rng: random.Random | None = None,
    advance: Callable[[int], None] | None = None,
) -> CheckReport:
    """Check the backups whose manifests are ``names``; decode every chunk
    with ``read_data``, else ``sample`` chunks chosen at random;
    ``advance(raw bytes)`` after each decoded chunk (progress)."""
    needed = _Needed()
    for name in names:
        needed.read(repo, name)
    missing = _missing(repo, needed)
    present = sorted(set(needed.chunks) - set(missing))
    rng = rng or random.Random()  # noqa: S311 - a sample, not a secret
    chosen = present if read_data else _sample(present, sample, rng)
    bad = dict.fromkeys(missing, MISSING) | _decode(repo, needed, chosen, advance)
    return CheckReport(
        backups=tuple(needed.backups),
        chunks=len(needed.chunks),
        decoded=len(chosen),
        bad=tuple(BadChunk(c, bad[c], needed.users(c)) for c in sorted(bad)),
        bad_manifests=tuple(needed.bad_manifests),
    )


def _sample(chunk_ids: list[str], n: int, rng: random.Random) -> list[str]:
    return rng.sample(chunk_ids, min(n, len(chunk_ids)))


def _missing(repo: Repository, needed: _Needed) -> list[str]:
    return missing_chunks(repo, needed.chunks)


def missing_chunks(repo: Repository, needed: Iterable[str]) -> list[str]:
    """The chunks of ``needed`` the repository does not hold, in one listing."""
    unseen = set(needed)
    for listed in repo.backend.list(layout.CHUNKS):
        if (chunk_id := layout.chunk_of(listed.name)) is not None:
            unseen.discard(chunk_id)
    return sorted(unseen)


def _decode(
    repo: Repository,
    needed: _Needed,
    chunk_ids: list[str],
    advance: Callable[[int], None] | None,
) -> dict[str, str]:
    """Chunk id -> problem, for those of ``chunk_ids`` that do not decode to their digest."""
    fetch = reader.Fetcher(repo, "", verify=True)

    def one(chunk_id: str) -> tuple[str, str | None]:
        length = needed.chunks[chunk_id][0]
        try:
            fetch(chunk_id, length)
        except MissingChunkError:  # gone since the listing
            return chunk_id, MISSING
        except IntegrityError as exc:
            return chunk_id, exc.message.removeprefix(": ")
        return chunk_id, None

    problems: dict[str, str] = {}

    def take(done: str, problem: str | None) -> None:  # in this thread, not a worker's
        if problem is not None:
            problems[done] = problem
        if advance is not None:
            advance(needed.chunks[done][0])

    with InOrder[tuple[str, str | None]]() as work:
        for chunk_id in chunk_ids:
            for done in work.submit(functools.partial(one, chunk_id)):
                take(*done)
        for done in work.drain():
            take(*done)
    return problems
