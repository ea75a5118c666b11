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
from dataclasses import dataclass
from typing import Any

from vmsnap import __version__
from vmsnap import manifest as sealed
from vmsnap.digest import CHUNK
from vmsnap.errors import IntegrityError
from vmsnap.repo.layout import is_chunk_id

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


@dataclass(frozen=True)
class RepoManifest:
    name: str  # the guest (or image store NAME)
    kind: str
    created: str
    host: str
    vmsnap_version: str
    disks: tuple[RepoDisk, ...]

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
    name: str, kind: str, disks: tuple[RepoDisk, ...], now: float | None = None
) -> RepoManifest:
    return RepoManifest(
        name=name,
        kind=kind,
        created=sealed.created_text(time.time() if now is None else now),
        host=socket.gethostname(),
        vmsnap_version=__version__,
        disks=disks,
    )


def to_bytes(m: RepoManifest) -> bytes:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": VERSION,
        "vmsnap_version": m.vmsnap_version,
        "host": m.host,
        "name": m.name,
        "kind": m.kind,
        "created": m.created,
        "disks": [_disk_doc(d) for d in m.disks],
    }
    return (json.dumps(sealed.seal(doc), indent=2) + "\n").encode()


def _disk_doc(d: RepoDisk) -> dict[str, Any]:
    return {
        "target": d.target,
        "size": d.size,
        "chunk_sha256": d.chunk_sha256,
        "new_bytes": d.new_bytes,
        "stored_bytes": d.stored_bytes,
        "chunks": list(d.chunks),
    }


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
    version = doc.get("format_version")
    if doc.get("format") != FORMAT or type(version) is not int:
        raise IntegrityError("not a vmsnap manifest")
    if version != VERSION:
        raise IntegrityError(f"format_version {version} is not {VERSION}: not a repository backup")


def _parse(top: Any) -> RepoManifest:
    kind = top.text("kind")
    if kind not in KINDS:
        raise IntegrityError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    disks = tuple(_disk(d) for d in top.objects("disks"))
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
    )


def _disk(d: Any) -> RepoDisk:
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
