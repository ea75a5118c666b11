"""``vmsnap verify``: check backups in a repository.

Every chunk a backup needs must exist (one listing of ``chunks/``), and
decode to its digest: with ``read_data`` every chunk is decoded, else a
random sample of ``sample`` of them (as restic's check does).  The manifest
must pass its seal and format checks (a chunk named by a path, ``../x``, is
refused there), and ``domain.xml`` must match the manifest's sha256.
Each backup is OK, CORRUPT (bytes are wrong: a chunk, the manifest,
domain.xml) or MISSING (a chunk it needs is gone); a bad chunk is reported
once, naming every backup of the repository that uses it.  Needs neither libvirt nor
LVM.  Each result is recorded in the backup's ``verified.json``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmsnap import catalog
from vmsnap.errors import ExitCode, IntegrityError, NotFoundError
from vmsnap.progress import Progress
from vmsnap.repo import check, locks, refs
from vmsnap.repo.check import BadChunk, CheckReport
from vmsnap.repo.manifest import RepoManifest
from vmsnap.repo.refs import BackupRef
from vmsnap.repo.repository import Repository


class Status(enum.StrEnum):
    OK = "OK"
    CORRUPT = "CORRUPT"  # bytes are not the ones the manifest describes
    MISSING = "MISSING"  # a chunk it needs is not in the repository


_WORST_FIRST = (Status.CORRUPT, Status.MISSING)


@dataclass(frozen=True)
class BackupReport:
    """One backup: ``problems`` of its manifest or domain.xml, one line each,
    and the bad chunks it uses."""

    ref: BackupRef
    status: Status
    problems: tuple[str, ...]
    disks: tuple[str, ...]  # targets; empty when the manifest could not be read
    bad_chunks: tuple[BadChunk, ...] = ()

    def lines(self) -> list[str]:
        """Every problem, one line each (none when OK)."""
        return [
            *self.problems,
            *(chunk_problem(self.ref.repo, b, users=False) for b in self.bad_chunks),
        ]

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


@dataclass(frozen=True)
class VerifyRun:
    reports: tuple[BackupReport, ...]
    chunks: int  # distinct chunks the backups need
    decoded: int  # of them, decoded and compared with their digest
    read_data: bool
    bad_chunks: tuple[tuple[Repository, BadChunk], ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)


def worst(statuses: Iterable[Status]) -> Status:
    seen = set(statuses)
    return next((s for s in _WORST_FIRST if s in seen), Status.OK)


def chunk_problem(repo: Repository, bad: BadChunk, *, users: bool = True) -> str:
    """One line for a bad chunk; with ``users``, naming every backup that uses it."""
    what = f"chunk {bad.chunk_id} is missing" if bad.missing else bad.problem
    line = f"{repo.location}: {what}"
    if not users:
        return line
    return line + "; used by " + ", ".join(f"{repo.location}/{n}" for n in _folders(bad))


def _folders(bad: BadChunk) -> list[str]:
    return [name.rsplit("/", 1)[0] for name in bad.backups]


def _domain_xml_problem(ref: BackupRef, m: RepoManifest) -> str | None:
    """domain.xml is what a restore or clone redefines the guest from."""
    if m.guest is None:
        return None  # an image store has none
    try:
        xml = ref.domain_xml()
    except (IntegrityError, NotFoundError) as exc:
        return str(exc)
    if hashlib.sha256(xml).hexdigest() != m.guest.domain.xml_sha256:
        return f"{ref.label}: domain.xml was changed or damaged: its sha256 is not the manifest's"
    return None


def _report(ref: BackupRef, result: CheckReport) -> BackupReport:
    problems = [e for n, e in result.bad_manifests if n == ref.manifest_name]
    disks: tuple[str, ...] = ()
    if ref.manifest_name in result.backups:
        m = ref.load()
        disks = tuple(d.target for d in m.disks)
        if (xml := _domain_xml_problem(ref, m)) is not None:
            problems.append(xml)
    bad = tuple(b for b in result.bad if ref.manifest_name in b.backups)
    statuses = [Status.MISSING if b.missing else Status.CORRUPT for b in bad]
    status = worst([*statuses, *(Status.CORRUPT for _p in problems)])
    return BackupReport(ref, status, tuple(problems), disks, bad)


def _by_repository(found: Sequence[BackupRef]) -> dict[str, list[BackupRef]]:
    groups: dict[str, list[BackupRef]] = {}
    for ref in found:
        groups.setdefault(ref.repo.location, []).append(ref)
    return groups


def verify(
    found: Sequence[BackupRef], *, read_data: bool, sample: int, progress: Progress
) -> VerifyRun:
    """Check the backups ``found``, repository by repository, and record each
    result in its ``verified.json`` (what ``backups`` shows and ``prune`` counts)."""
    reports: list[BackupReport] = []
    chunks = decoded = 0
    bad: list[tuple[Repository, BadChunk]] = []
    for location, group in _by_repository(found).items():
        repo = group[0].repo
        progress.item(f"{location}: chunks", None)
        try:
            with locks.reading(repo, "verify"):
                result = check.check(
                    repo,
                    [r.manifest_name for r in group],
                    read_data=read_data,
                    sample=sample,
                    advance=progress.advance,
                )
        finally:
            progress.item_done()
        chunks, decoded = chunks + result.chunks, decoded + result.decoded
        bad += [(repo, b) for b in _every_user(repo, result.bad)]
        for ref in group:
            reports.append(_report(ref, result))
            catalog.record_verified(ref, str(reports[-1].status), time.time())
    return VerifyRun(tuple(reports), chunks, decoded, read_data, tuple(bad))


def _every_user(repo: Repository, bad: tuple[BadChunk, ...]) -> list[BadChunk]:
    """The bad chunks, each naming every backup in the repository that uses
    it (not only the ones checked): what else a restore would refuse."""
    if not bad:
        return []
    users: dict[str, list[str]] = {b.chunk_id: [] for b in bad}
    for ref in refs.backups(repo):
        try:
            m = ref.load()
        except (IntegrityError, NotFoundError):
            continue  # its own problem, if it was checked
        for chunk_id in {c for d in m.disks for c in d.chunks} & users.keys():
            users[chunk_id].append(ref.manifest_name)
    return [dataclasses.replace(b, backups=tuple(users[b.chunk_id]) or b.backups) for b in bad]


def exit_code(run: VerifyRun) -> ExitCode:
    """INTEGRITY when anything is corrupt, else MISSING_DATA when a chunk is
    missing, else OK."""
    status = worst(r.status for r in run.reports)
    if status is Status.CORRUPT:
        return ExitCode.INTEGRITY
    return ExitCode.MISSING_DATA if status is Status.MISSING else ExitCode.OK


# ---------------------------------------------------------------- what to verify


def backups_at(paths: Sequence[Path]) -> list[BackupRef]:
    """The backups local paths name (a repository, ``REPO/backups/<guest>``,
    a backup folder), each once, in order; NotFoundError for a path that
    holds none, before anything is read."""
    found: dict[tuple[str, str], BackupRef] = {}
    for path in paths:
        named = refs.locate(path).refs()
        if not named:
            raise NotFoundError(f"{path}: no backups there")
        for ref in named:
            found.setdefault((ref.repo.location, ref.manifest_name), ref)
    return list(found.values())


def backups_of(repo: Repository, guests: list[str] | None) -> list[BackupRef]:
    """The backups of ``guests`` (every guest's by default) in ``repo``."""
    found = [r for rs in catalog.guest_refs(repo, guests).values() for r in rs]
    if not found:
        raise NotFoundError(f"no backups in {repo.location}")
    return found
