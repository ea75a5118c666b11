"""Format 3 manifests: ``backups/<guest>/<UTC time>/manifest.json``.

The same sealed JSON as format 2 (vmsnap.manifest's seal and strict decoding),
but a disk is its size, its volume digest and the ordered list of its chunk
ids, not an image file.  The reader refuses anything it does not understand,
and proves the chunk list against the volume digest before anyone reads a
chunk: in a repository that names chunks by their sha256, the volume digest is
the sha256 of the list's lines.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmsnap import __version__
from vmsnap import manifest as sealed
from vmsnap.digest import CHUNK
from vmsnap.errors import IntegrityError
from vmsnap.repo.layout import is_chunk_id

if TYPE_CHECKING:  # the writer's input; reading does not need it
    from vmsnap.quiesce import Window

FORMAT = sealed.FORMAT
VERSION = 3
KINDS = ("image", "guest")  # image store, or a guest's backup


@dataclass(frozen=True)
class RepoDisk:
    target: str
    size: int
    chunk_sha256: str
    chunks: tuple[str, ...]  # chunk ids, in order
    new_bytes: int = 0  # raw bytes of the chunks this backup stored first
    stored_bytes: int = 0  # their compressed bytes
    volume: str = ""  # a guest's disk: the LV it was read from, vg/lv
    snapshot: Mapping[str, Any] | None = None  # a guest's disk: kind, size, peak fill, extended


@dataclass(frozen=True)
class Domain:
    """What a guest backup records of the guest; its definition is domain.xml."""

    name: str
    uuid: str
    hypervisor: str
    xml_sha256: str  # of the domain.xml object


@dataclass(frozen=True)
class GuestPart:
    """The members only a guest's backup has (kind ``guest``)."""

    domain: Domain
    quiesce: Mapping[str, Any]  # requested, mode, state_before, window_seconds, ...
    skipped: tuple[tuple[str, str], ...] = ()  # (target, reason)


@dataclass(frozen=True)
class RepoManifest:
    name: str  # the guest (or image store NAME)
    kind: str
    created: str
    host: str
    vmsnap_version: str
    disks: tuple[RepoDisk, ...]
    guest: GuestPart | None = None  # None for an image store

    @property
    def total_size(self) -> int:
        return sum(d.size for d in self.disks)

    @property
    def new_bytes(self) -> int:
        return sum(d.new_bytes for d in self.disks)

    @property
    def stored_bytes(self) -> int:
        return sum(d.stored_bytes for d in self.disks)

    def disk(self, target: str | None) -> RepoDisk:
        """The disk called ``target``; without one, the only disk."""
        if target is None and len(self.disks) == 1:
            return self.disks[0]
        if target is None:
            names = ", ".join(d.target for d in self.disks)
            raise LookupError(f"{self.name} has {len(self.disks)} disks ({names}): pick one")
        for d in self.disks:
            if d.target == target:
                return d
        raise LookupError(f"{self.name} has no disk {target!r}")


def new(
    name: str,
    kind: str,
    disks: tuple[RepoDisk, ...],
    now: float | None = None,
    *,
    guest: GuestPart | None = None,
    host: str | None = None,
) -> RepoManifest:
    if (kind == "guest") != (guest is not None):
        raise ValueError("a guest backup, and only one, has the guest members")
    return RepoManifest(
        name=name,
        kind=kind,
        created=sealed.created_text(time.time() if now is None else now),
        host=host or socket.gethostname(),
        vmsnap_version=__version__,
        disks=disks,
        guest=guest,
    )


def quiesce_doc(window: Window) -> dict[str, Any]:
    """The ``quiesce`` member of a guest backup: how the guest was held still."""
    return {
        "requested": str(window.requested),
        "mode": window.used,
        "state_before": window.state_before,
        "window_seconds": round(window.seconds, 3),
        "frozen_filesystems": window.frozen_filesystems,
        "note": window.note,
    }


def to_bytes(m: RepoManifest) -> bytes:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": VERSION,
        "vmsnap_version": m.vmsnap_version,
        "host": m.host,
        "name": m.name,
        "kind": m.kind,
        "created": m.created,
        **_guest_doc(m.guest),
        "disks": [_disk_doc(d) for d in m.disks],
    }
    if m.guest is not None:
        doc["skipped"] = [{"target": t, "reason": r} for t, r in m.guest.skipped]
    return (json.dumps(sealed.seal(doc), indent=2) + "\n").encode()


def _guest_doc(g: GuestPart | None) -> dict[str, Any]:
    if g is None:
        return {}
    domain = {
        "name": g.domain.name,
        "uuid": g.domain.uuid,
        "hypervisor": g.domain.hypervisor,
        "xml_sha256": g.domain.xml_sha256,
    }
    return {"domain": domain, "quiesce": dict(g.quiesce)}


def _disk_doc(d: RepoDisk) -> dict[str, Any]:
    doc: dict[str, Any] = {"target": d.target}
    if d.snapshot is not None:  # a guest's disk
        doc["volume"] = d.volume
    doc.update(
        size=d.size,
        chunk_sha256=d.chunk_sha256,
        new_bytes=d.new_bytes,
        stored_bytes=d.stored_bytes,
    )
    if d.snapshot is not None:
        doc["snapshot"] = dict(d.snapshot)
    doc["chunks"] = list(d.chunks)
    return doc


def parse(data: bytes, where: str) -> RepoManifest:
    """A manifest read from the repository; every error names ``where``."""
    try:
        _check_size(data)
        doc = sealed.decode_document(data)  # the one strict JSON decoder
        _check_format(doc)
        sealed.check_seal(doc)
        return _parse(sealed.Members(doc, ""))  # typed member access
    except IntegrityError as exc:
        raise IntegrityError(f"{where}: {exc.message}", hint=exc.hint) from exc


def _check_size(data: bytes) -> None:
    if len(data) > sealed.MAX_BYTES:
        raise IntegrityError(f"larger than {sealed.MAX_BYTES} bytes: not a manifest")


def _check_format(doc: dict[str, Any]) -> None:
    """Reject what this reader does not understand, before trusting anything else."""
    if doc.get("format") != FORMAT:
        raise IntegrityError(f"format is {doc.get('format')!r}, not {FORMAT!r}")
    version = doc.get("format_version")
    if type(version) is not int or version != VERSION:
        newer = type(version) is int and version > VERSION
        raise IntegrityError(
            f"format_version {version!r} is not {VERSION}, the one this vmsnap reads",
            hint="written by a newer vmsnap?" if newer else None,
        )


def _parse(top: Any) -> RepoManifest:
    kind = top.text("kind")
    if kind not in KINDS:
        raise IntegrityError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    disks = tuple(_disk(d, guest=kind == "guest") for d in top.objects("disks"))
    targets = [d.target for d in disks]
    if not disks or len(set(targets)) != len(targets):
        raise IntegrityError("disks must be a non-empty list of distinct targets")
    return RepoManifest(
        name=top.text("name"),
        kind=kind,
        created=sealed.created_member(top),  # the same time check as format 2
        host=top.text("host"),
        vmsnap_version=top.text("vmsnap_version"),
        disks=disks,
        guest=_guest(top) if kind == "guest" else None,
    )


def _guest(top: Any) -> GuestPart:
    d, q = top.obj("domain"), top.obj("quiesce")
    for key in ("requested", "mode", "state_before", "note"):
        q.text(key)
    q.number("window_seconds")
    q.count_or_null("frozen_filesystems")
    domain = Domain(d.text("name"), d.text("uuid"), d.text("hypervisor"), d.text("xml_sha256"))
    skipped = tuple((s.text("target"), s.text("reason")) for s in top.objects("skipped"))
    return GuestPart(domain, q.raw, skipped)


def _snapshot(d: Any) -> Mapping[str, Any]:
    s = d.obj("snapshot")
    if s.text("kind") not in sealed.SNAPSHOT_KINDS:
        raise IntegrityError(f"{s.name('kind')} {s.raw['kind']!r} is not thick or thin")
    s.count_or_null("size")
    raw: Mapping[str, Any] = s.raw
    return raw


def _disk(d: Any, *, guest: bool) -> RepoDisk:
    chunks = d.raw.get("chunks")
    if not isinstance(chunks, list) or not all(is_chunk_id(c) for c in chunks):
        raise IntegrityError(f"{d.name('chunks')} must be a list of chunk ids (64 hex digits)")
    disk = RepoDisk(
        target=d.text("target"),
        size=d.count("size"),
        chunk_sha256=d.text("chunk_sha256"),
        chunks=tuple(chunks),
        new_bytes=d.count("new_bytes"),
        stored_bytes=d.count("stored_bytes"),
        volume=d.text("volume") if guest else "",
        snapshot=_snapshot(d) if guest else None,
    )
    if not disk.target:
        raise IntegrityError(f"{d.name('target')} is empty")
    if len(disk.chunks) != -(-disk.size // CHUNK):
        raise IntegrityError(f"{d.name('chunks')}: {len(chunks)} chunks for {disk.size} bytes")
    if volume_digest(disk.chunks) != disk.chunk_sha256:
        raise IntegrityError(f"{d.name('chunk_sha256')} does not match the list of chunks")
    return disk


def volume_digest(chunk_ids: tuple[str, ...]) -> str:
    """The chunk digest of vmsnap.digest, from the chunks' sha256 ids."""
    top = hashlib.sha256()
    for chunk_id in chunk_ids:
        top.update(chunk_id.encode() + b"\n")
    return top.hexdigest()
