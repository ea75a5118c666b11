"""The local chunk index: which chunks a repository holds, without asking it.

A cache, in sqlite3 (bounded memory, millions of ids), at
``<cache>/<repository id>/chunks.sqlite``; ``<cache>`` is $VMSNAP_CACHE_DIR,
else /var/cache/vmsnap for root, else $XDG_CACHE_HOME/vmsnap (~/.cache/vmsnap).
It is only ever behind the repository, never ahead: an id goes in after its
chunk was written durably, and an index made before the repository's
``epoch`` last changed (something deleted chunks) is rebuilt from a listing of
``chunks/``, as is one that is missing or was never completed.  A chunk the
index does not know is looked up in a local repository before it is
written; for a bucket, the index is merged with one listing of ``chunks/`` at
the start of each run instead (what other hosts wrote), so that a backup
costs no request per chunk it already holds.
Without a usable cache folder the index lives in memory for the run.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from vmsnap.logs import VERBOSE
from vmsnap.repo.layout import CHUNKS, chunk_of
from vmsnap.repo.repository import Repository

log = logging.getLogger("vmsnap")
_BATCH = 10000
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS chunks (id BLOB PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def cache_root() -> Path:
    if env := os.environ.get("VMSNAP_CACHE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/vmsnap")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "vmsnap"


class ChunkIndex:
    """Chunk ids known to be held; safe to use from the worker threads."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.lock = threading.Lock()
        self.listed = False  # merged with a full listing in this run: a miss is not held

    def __contains__(self, chunk_id: str) -> bool:
        with self.lock:
            row = self.db.execute("SELECT 1 FROM chunks WHERE id = ?", (bytes.fromhex(chunk_id),))
            return row.fetchone() is not None

    def add(self, chunk_id: str) -> None:
        with self.lock:
            self.db.execute("INSERT OR IGNORE INTO chunks VALUES (?)", (bytes.fromhex(chunk_id),))

    def commit(self) -> None:
        with self.lock:
            self.db.commit()

    def __len__(self) -> int:
        with self.lock:
            return int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


@contextmanager
def open_index(repo: Repository) -> Iterator[ChunkIndex]:
    """The repository's index, fresh (rebuilt first if it must be); what was
    added is committed on leaving, even after an error: it is all true."""
    with closing(_connect(repo)) as db:
        index = ChunkIndex(db)
        epoch = repo.epoch()
        if index.meta("epoch") != epoch or index.meta("complete") != "1":
            rebuild(index, repo, epoch)
        elif repo.backend.remote:
            merge(index, repo)  # what other hosts wrote since: one listing, not a HEAD per chunk
        index.listed = index.listed or repo.backend.remote
        try:
            yield index
        finally:
            index.commit()


def _connect(repo: Repository) -> sqlite3.Connection:
    folder = cache_root() / repo.config.id
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        db = sqlite3.connect(folder / "chunks.sqlite", timeout=60, check_same_thread=False)
        _schema(db)
    except (OSError, sqlite3.Error) as exc:
        log.warning("chunk index: cannot use %s (%s); keeping it in memory", folder, exc)
        db = sqlite3.connect(":memory:", check_same_thread=False)
        _schema(db)
    return db


def _schema(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        db.execute(statement)
    db.commit()


def rebuild(index: ChunkIndex, repo: Repository, epoch: str) -> None:
    """Replace the index by a listing of the repository's chunks."""
    log.log(VERBOSE, "chunk index: reading the list of chunks in %s", repo.location)
    with index.lock:
        index.db.execute("DELETE FROM chunks")
        index.set_meta("complete", "0")
        _insert_listing(index, repo)
        index.set_meta("epoch", epoch)
        index.set_meta("complete", "1")
        index.db.commit()
    index.listed = True


def merge(index: ChunkIndex, repo: Repository) -> None:
    """Add the chunks a listing shows (written by other hosts since)."""
    log.log(VERBOSE, "chunk index: merging the list of chunks in %s", repo.location)
    with index.lock:
        _insert_listing(index, repo)
        index.db.commit()
    index.listed = True


def _insert_listing(index: ChunkIndex, repo: Repository) -> None:
    batch: list[tuple[bytes]] = []
    for listed in repo.backend.list(CHUNKS):
        if (chunk_id := chunk_of(listed.name)) is not None:
            batch.append((bytes.fromhex(chunk_id),))
        if len(batch) >= _BATCH:
            index.db.executemany("INSERT OR IGNORE INTO chunks VALUES (?)", batch)
            batch.clear()
    index.db.executemany("INSERT OR IGNORE INTO chunks VALUES (?)", batch)
