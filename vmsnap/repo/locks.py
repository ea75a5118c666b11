"""Repository locks, as vmsnap-format(5) (LOCKS) specifies them.

Shared for the runs that write or read backups, exclusive for a garbage
collection, so that a collection on one host never deletes a chunk that a
backup on another host is about to name.  A lock is an object
``locks/<id>``: written, then the folder listed; it is held when no other
lock that is not stale conflicts.  It needs nothing but atomic PUTs and
consistent listings, so it works on every S3 store and on a local folder
(NFS included).  A thread renews the lock every 5 minutes; a lock older than
30 minutes by the store's clock is stale, and so at once is one of a run on
this host whose process is gone; a holder that could not renew for 20
minutes stops before it relies on the lock (:meth:`Held.check`).

The times can be shortened for tests with $VMSNAP_REPO_LOCK_TIMES
("renew,give_up,stale" in seconds).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass

from vmsnap.errors import (
    DestinationError,
    LockedError,
    LockLostError,
    UnreachableError,
    VmsnapError,
)
from vmsnap.repo.backend import Listed, ObjectMissing
from vmsnap.repo.repository import Repository

log = logging.getLogger("vmsnap")

LOCKS = "locks/"
FORMAT = "vmsnap-lock"
SHARED, EXCLUSIVE = "shared", "exclusive"
POLL = 10.0  # seconds between tries while waiting


@dataclass(frozen=True)
class Times:
    renew: float = 300.0
    give_up: float = 1200.0
    stale: float = 1800.0


def times() -> Times:
    text = os.environ.get("VMSNAP_REPO_LOCK_TIMES", "").strip()
    if not text:
        return Times()
    renew, give_up, stale = (float(v) for v in text.split(","))
    return Times(renew, give_up, stale)


@dataclass(frozen=True)
class LockInfo:
    """Another run's lock, as its object says."""

    name: str
    kind: str
    host: str
    pid: int
    command: str
    created: str

    def describe(self) -> str:
        return f"{self.command} on {self.host} (pid {self.pid}, since {self.created})"


class Held:
    """A lock this run holds; renewed by a thread until released."""

    def __init__(self, repo: Repository, name: str, body: bytes, limits: Times) -> None:
        self.repo, self.name, self.body, self.limits = repo, name, body, limits
        self.renewed = time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._renewing, name="vmsnap-lock", daemon=True)

    def check(self) -> None:
        """Raise :class:`LockLostError` if the lock may look stale to others."""
        quiet = time.monotonic() - self.renewed
        if quiet > self.limits.give_up:
            raise LockLostError(
                f"{self.repo.location}: could not renew this run's lock for {quiet:.0f} s; "
                "stopping before relying on it",
                hint="the object store did not answer; nothing was published",
            )

    def _renewing(self) -> None:
        while not self.stop.wait(self.limits.renew):
            try:
                self.repo.backend.put(self.name, self.body)
            except VmsnapError as exc:
                log.warning("could not renew the repository lock: %s", exc)
                continue
            self.renewed = time.monotonic()


def _body(kind: str, command: str) -> bytes:
    doc = {
        "format": FORMAT,
        "kind": kind,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return (json.dumps(doc) + "\n").encode()


def _info(repo: Repository, name: str) -> LockInfo | None:
    """A lock's object; None when it is gone.  One that cannot be read counts
    as exclusive: a conflict is the safe guess."""
    try:
        doc = json.loads(repo.backend.get(name))
    except ObjectMissing:
        return None
    except (ValueError, UnicodeDecodeError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    kind = doc.get("kind") if doc.get("kind") in (SHARED, EXCLUSIVE) else EXCLUSIVE
    pid = doc.get("pid")
    return LockInfo(
        name,
        str(kind),
        str(doc.get("host", "?")),
        pid if isinstance(pid, int) else 0,
        str(doc.get("command", "?")),
        str(doc.get("created", "?")),
    )


def listing(repo: Repository, mine: str | None, limits: Times) -> tuple[list[Listed], list[Listed]]:
    """The other locks, (live, stale): stale by the store's clock, measured
    from our own lock just written (or from the newest when we hold none)."""
    found = list(repo.backend.list(LOCKS))
    ours = [x.modified for x in found if x.name == mine]
    now = ours[0] if ours else max((x.modified for x in found), default=time.time())
    others = [x for x in found if x.name != mine]
    live = [x for x in others if now - x.modified <= limits.stale]
    return live, [x for x in others if now - x.modified > limits.stale]


def _blocker(repo: Repository, mine: str, kind: str, limits: Times) -> LockInfo | None:
    live, _stale = listing(repo, mine, limits)
    for listed in live:
        info = _info(repo, listed.name)
        if info is None or EXCLUSIVE not in (kind, info.kind):
            continue
        if _dead_here(info):  # killed on this host: no need to wait for it to go stale
            log.warning("removing the lock of a dead run: %s", info.describe())
            repo.backend.delete(info.name)
            continue
        return info
    return None


def _dead_here(info: LockInfo) -> bool:
    """The lock's run was on this host and its process is gone."""
    if info.host != socket.gethostname() or info.pid <= 0 or info.pid == os.getpid():
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def repo_lock(repo: Repository, kind: str, *, command: str, wait: float = 0.0) -> Iterator[Held]:
    """Hold a ``kind`` lock on ``repo`` for the block; wait up to ``wait``
    seconds for a conflicting one to go, then :class:`LockedError` (11)."""
    limits = times()
    name = f"{LOCKS}{secrets.token_hex(16)}"
    body = _body(kind, command)
    deadline = time.monotonic() + wait
    while True:
        repo.backend.put(name, body)
        blocker = _blocker(repo, name, kind, limits)
        if blocker is None:
            break
        repo.backend.delete(name)
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockedError(
                f"{repo.location} is in use by {blocker.describe()}",
                hint=f"its lock is {blocker.name}; a lock left by a killed run goes "
                f"stale after {limits.stale / 60:.0f} minutes",
            )
        log.info("waiting for %s to finish with %s", blocker.describe(), repo.location)
        time.sleep(min(POLL, left))
    held = Held(repo, name, body, limits)
    held.thread.start()
    try:
        yield held
    finally:
        held.stop.set()
        held.thread.join()
        try:
            repo.backend.delete(name)
        except VmsnapError as exc:
            log.warning("could not remove the repository lock %s (it goes stale): %s", name, exc)


@contextmanager
def reading(repo: Repository, command: str) -> Iterator[Held | None]:
    """A shared lock for a run that only reads backups (restore, clone,
    export, verify), so that no collection removes what it reads; with
    read-only credentials (the store refuses the lock object) it reads
    without one, and says so."""
    with ExitStack() as stack:
        held: Held | None = None
        try:  # only taking the lock may fall back; an error of the body is the body's
            held = stack.enter_context(shared(repo, command))
        except DestinationError as exc:  # 18 in a bucket, 9 in a read-only folder
            if isinstance(exc, UnreachableError) or not _refused_lock(exc):
                raise
            log.warning(
                "%s: cannot write a lock object (read-only access?); reading without one: "
                "a prune on another host could remove what this run reads",
                repo.location,
            )
        yield held


def _refused_lock(exc: DestinationError) -> bool:
    return LOCKS in exc.message


def remove_stale(repo: Repository, held: Held) -> int:
    """Delete the stale locks (killed runs'); for the exclusive holder.  How many."""
    _live, stale = listing(repo, held.name, held.limits)
    for listed in stale:
        repo.backend.delete(listed.name)
    return len(stale)


def shared(repo: Repository, command: str) -> AbstractContextManager[Held]:
    """The shared lock of a run that writes a backup."""
    return repo_lock(repo, SHARED, command=command, wait=shared_wait())


def shared_wait() -> float:
    """How long a backup waits for a collection on another host: $VMSNAP_LOCK_WAIT
    (the run lock's setting) or 10 minutes."""
    text = os.environ.get("VMSNAP_LOCK_WAIT", "").strip()
    try:
        return float(text) if text else 600.0
    except ValueError:
        return 600.0
