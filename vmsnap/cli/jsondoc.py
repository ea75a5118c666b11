"""Every ``--json`` document vmsnap prints: a public contract that scripts parse.

One function per result type, each naming the keys it writes (no ``vars()``:
a value json cannot encode never reaches ``json.dumps``).  Where a whole
dataclass of plain values is the document, ``dataclasses.asdict``; the golden
files in tests/cli/golden/ pin every document, so no field changes unnoticed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmsnap.backup import GuestResult
    from vmsnap.catalog import GuestBackups, Stored
    from vmsnap.checkpoint import Checkpoint, CheckpointDisk
    from vmsnap.cleanup import CleanupReport
    from vmsnap.clone import CloneResult
    from vmsnap.image import StreamStats
    from vmsnap.journal import GuestEntry
    from vmsnap.lvwrite import RestoredDisk
    from vmsnap.models import Guest
    from vmsnap.repo.check import BadChunk
    from vmsnap.repo.gc import GcReport
    from vmsnap.repo.jobs import ExportResult, StoreResult
    from vmsnap.repo.manifest import RepoDisk
    from vmsnap.repo.refs import BackupRef
    from vmsnap.repo.repository import Repository
    from vmsnap.repo.writer import Counts
    from vmsnap.restore import RestoreResult
    from vmsnap.retention import GuestPrune, Policy, PruneRun
    from vmsnap.snapshots import GuestPlan
    from vmsnap.verify import BackupReport, VerifyRun

Doc = dict[str, Any]


def emit(doc: Doc | list[Doc]) -> None:
    """The one JSON document of a run, on stdout."""
    print(json.dumps(doc, indent=2))


def exit_error(message: str, code: int) -> Doc:
    """What a run that fails prints with --json, instead of its document."""
    return {"message_type": "exit_error", "exit_code": code, "message": message}


def _path(path: Path | None) -> str | None:
    return str(path) if path is not None else None


# ---------------------------------------------------------------- list


def guest(g: Guest) -> Doc:
    return {
        "name": g.name,
        "uuid": g.uuid,
        "state": g.state,
        "hypervisor": g.hypervisor,
        "disks": [
            {
                "target": d.target,
                "device": d.spec.device,
                "type": d.spec.source_type,
                "source": d.spec.source,
                "volume": d.volume.full_name if d.volume else None,
                "size": d.size,
                "kind": d.volume.kind if d.volume else None,
                "backup": d.reason is None,
                "reason": d.reason,
            }
            for d in g.disks
        ],
    }


# ---------------------------------------------------------------- backup, cleanup


def backup_result(result: GuestResult, prune: GuestPrune | None, now: float) -> Doc:
    window = result.window
    return {
        "name": result.name,
        "ok": result.ok,
        "error": str(result.error) if result.error else None,
        "exit_code": int(result.error.exit_code) if result.error else 0,
        "directory": result.backup.label if result.backup else None,
        "backup": backup_ref(result.backup) if result.backup else None,
        "counts": counts(result.counts),
        "quiesce": {"mode": window.used, "window_seconds": round(window.seconds, 3)}
        if window
        else None,
        "disks": [disk_result(d) for d in result.disks],
        "plan": plan(result.plan) if result.plan else None,
        "prune": guest_prune(prune, now) if prune else None,
        "skipped": result.skipped,
    }


def backup_ref(ref: BackupRef) -> Doc:
    return {"repository": ref.repo.location, "guest": ref.guest, "time": ref.stamp}


def counts(c: Counts) -> Doc:
    """What a store did: bytes read, new (raw, and stored compressed), deduplicated."""
    return {
        "chunks": c.chunks,
        "new_chunks": c.new_chunks,
        "read_bytes": c.read,
        "new_bytes": c.new,
        "stored_bytes": c.stored,
        "deduplicated_bytes": c.deduplicated,
    }


def disk_result(d: RepoDisk) -> Doc:
    """A stored disk, without its chunk list (the manifest has it)."""
    return {
        "target": d.target,
        "volume": d.volume,
        "size": d.size,
        "chunk_sha256": d.chunk_sha256,
        "new_bytes": d.new_bytes,
        "stored_bytes": d.stored_bytes,
        "chunks": len(d.chunks),
        "snapshot": dict(d.snapshot or {}),
    }


def plan(p: GuestPlan) -> Doc:
    return {
        "disks": [
            {
                "target": d.target,
                "volume": d.volume.full_name,
                "kind": d.volume.kind,
                "size": d.volume.size,
                "snapshot": d.snapshot_name,
                "snapshot_size": d.cow_size,
            }
            for d in p.disks
        ],
        "skipped": [{"target": t, "reason": r} for t, r in p.skipped],
    }


def cleanup_report(report: CleanupReport, dry_run: bool) -> Doc:
    return {
        "dry_run": dry_run,
        "resumed": list(report.resumed),
        "thawed": list(report.thawed),
        "snapshots": list(report.snapshots),
        "volumes": list(report.volumes),
        "problems": list(report.problems),
        "unresolved": [journal_guest(e) for e in report.unresolved],
    }


def journal_guest(e: GuestEntry) -> Doc:
    return {"uri": e.uri, "name": e.name, "uuid": e.uuid, "action": e.action}


# ---------------------------------------------------------------- verify, prune, backups


def verify_run(run: VerifyRun) -> Doc:
    return {
        "ok": run.ok,
        "backups": [verify_report(r) for r in run.reports],
        "bad_chunks": [bad_chunk(repo, b) for repo, b in run.bad_chunks],
        "read_data": run.read_data,
        "chunks": run.chunks,
        "decoded": run.decoded,
    }


def verify_report(report: BackupReport) -> Doc:
    return {
        "backup": report.ref.label,
        "guest": report.ref.guest,
        "stamp": report.ref.stamp,
        "status": str(report.status),
        "ok": report.ok,
        "disks": list(report.disks),
        "problems": report.lines(),
    }


def bad_chunk(repo: Repository, b: BadChunk) -> Doc:
    return {
        "chunk": b.chunk_id,
        "missing": b.missing,
        "problem": b.problem,
        "backups": [f"{repo.location}/{name.rsplit('/', 1)[0]}" for name in b.backups],
    }


def stored(b: Stored, now: float) -> Doc:
    m = b.manifest
    created = b.created
    return {
        "guest": b.guest,
        "backup": b.ref.label,
        "stamp": b.stamp,
        "created": m.created if m else None,
        "age_seconds": round(now - created.timestamp()) if created else None,
        "size": m.total_size if m else None,
        "new_bytes": m.new_bytes if m else None,
        "stored_bytes": m.stored_bytes if m else None,
        "unique_bytes": b.unique_bytes if m else None,
        "disks": [d.target for d in m.disks] if m else [],
        "verified": {"at": b.verified.at, "status": b.verified.status} if b.verified else None,
        "good": b.good,
        "problem": b.problem,
    }


def guest_prune(p: GuestPrune, now: float) -> Doc:
    return {
        "guest": p.guest,
        "location": p.label,
        "keep": [{**stored(b, now), "reasons": list(why)} for b, why in p.keep],
        "remove": [stored(b, now) for b in p.remove],
        "ignored": [stored(b, now) for b in p.ignored],
        "errors": list(p.errors),
    }


def gc_report(r: GcReport) -> Doc:
    """Every field: the whole dataclass is the document (plain values only)."""
    return {**dataclasses.asdict(r), "orphans": list(r.orphans)}


def prune_run(dry_run: bool, policy: Policy, run: PruneRun, now: float) -> Doc:
    return {
        "dry_run": dry_run,
        "policy": policy.as_dict(),
        "guests": [guest_prune(p, now) for p in run.plans],
        "gc": gc_report(run.gc) if run.gc is not None else None,
    }


def guest_backups(g: GuestBackups, now: float) -> Doc:
    good = next((b for b in reversed(g.backups) if b.good and b.created), None)
    return {
        "guest": g.guest,
        "location": g.label,
        "newest_good": good.stamp if good else None,
        "newest_good_age_seconds": round(now - good.created.timestamp())
        if good and good.created
        else None,
        "backups": [stored(b, now) for b in reversed(g.backups)],
    }


# ---------------------------------------------------------------- restore, clone, image


def restored_disk(d: RestoredDisk) -> Doc:
    """Every field: the whole dataclass is the document (plain values only)."""
    return dataclasses.asdict(d)


def restore_result(result: RestoreResult) -> Doc:
    return {"backup": result.backup, "disks": [restored_disk(d) for d in result.disks]}


def clone_result(result: CloneResult, xml_path: Path | None) -> Doc:
    return {
        "name": result.name,
        "uuid": result.uuid,
        "defined": result.defined,
        "started": result.started,
        "xml": _path(xml_path),
        "domain_xml": result.xml,
        "backup": result.backup,
        "disks": [restored_disk(d) for d in result.disks],
    }


def stream_stats(stats: StreamStats) -> Doc:
    return {
        "size": stats.size,
        "chunk_sha256": stats.chunk_sha256,
        "compressed_size": stats.compressed_size,
    }


# ---------------------------------------------------------------- repository


def repository(repo: Repository) -> Doc:
    return {"repository": repo.location, **repo.config.document()}


def store_result(r: StoreResult) -> Doc:
    return {
        "repository": r.repository,
        "name": r.name,
        "manifest": r.backup,
        "size": r.disk.size,
        "chunk_sha256": r.disk.chunk_sha256,
        **counts(r.counts),
    }


def export_result(r: ExportResult) -> Doc:
    return {
        "manifest": r.backup,
        "disk": r.target,
        "size": r.size,
        "chunk_sha256": r.chunk_sha256,
        "compressed_size": r.written,
    }


# ---------------------------------------------------------------- checkpoint


def checkpoint(cp: Checkpoint, now: float) -> Doc:
    return {
        "domain": cp.name,
        "uuid": cp.uuid,
        "label": cp.label,
        "created": cp.created,
        "age_seconds": round(now - cp.created),
        "expires": cp.expires,
        "expired": cp.expired(now),
        "invalid": cp.invalid,
        "disks": [checkpoint_disk(d) for d in cp.disks],
    }


def checkpoint_disk(d: CheckpointDisk) -> Doc:
    return {
        "target": d.target,
        "snapshot": d.snapshot.full_name,
        "origin": d.origin.full_name if d.origin else None,
        "kind": d.snapshot.kind,
        "size": d.snapshot.size,
        "fill_percent": d.fill,
        "cow_left": d.cow_left,
        "pool": d.pool.full_name if d.pool else None,
        "pool_fill_percent": d.pool_fill,
        "invalid": d.invalid,
    }
