"""Backups built for tests, as ``vmsnap backup`` writes them: real chunks by
the repository's writer, domain.xml and a sealed format-3 manifest; and ways
to damage them."""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmsnap import manifest
from vmsnap.repo import jobs, layout, refs
from vmsnap.repo import manifest as rmanifest
from vmsnap.repo.index import ChunkIndex, open_index
from vmsnap.repo.repository import Repository, init_local, open_local
from vmsnap.repo.writer import store_volume

STAMP = "20261127T042319Z"
MiB = 1 << 20


def random_bytes(n: int, seed: int = 0) -> bytes:
    """Deterministic incompressible data."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha512(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def disk_data(seed: int = 0) -> bytes:
    """A small disk: noise, zeros, noise (raw and compressed blocks both)."""
    return random_bytes(300_000, seed) + bytes(200_000) + random_bytes(50_000, seed + 1)


def manifest_doc(guest: str, disks: list[dict[str, Any]]) -> dict[str, Any]:
    """An unsealed guest manifest, member for member as the writer makes it."""
    return {
        "format": "vmsnap-backup",
        "format_version": 3,
        "vmsnap_version": "0.1.0",
        "host": "kvm1.example.org",
        "name": guest,
        "kind": "guest",
        "created": "2026-11-27T04:23:19Z",
        "domain": {
            "name": guest,
            "uuid": "6c1b7f3e-2d4a-4f0e-9b8a-3e5d1c2f4a7b",
            "hypervisor": "kvm",
            "xml_sha256": "0" * 64,
        },
        "quiesce": {
            "requested": "auto",
            "mode": "freeze",
            "state_before": "running",
            "window_seconds": 0.412,
            "frozen_filesystems": 2,
            "note": "",
        },
        "disks": disks,
        "skipped": [{"target": "sda", "reason": "cdrom"}],
    }


def write_manifest(folder: Path, doc: dict[str, Any]) -> None:
    """As the writer writes it: indented, non-ASCII escaped."""
    (folder / layout.MANIFEST).write_text(json.dumps(doc, indent=2) + "\n")


def read_manifest(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / layout.MANIFEST).read_text())
    return doc


def repository(root: Path) -> Repository:
    """The repository at ``root``, made by vmsnap init when there is none."""
    if (root / layout.CONFIG).exists():
        return open_local(root)
    return init_local(root)


def make_backup(
    dest: Path,
    guest: str = "web01",
    stamp: str = STAMP,
    disks: dict[str, bytes] | None = None,
    xml: bytes | None = None,
) -> Path:
    """A published guest backup ``dest/backups/<guest>/<stamp>`` in the
    repository ``dest`` (made if need be), as vmsnap backup writes it: chunks
    by the writer, domain.xml (``xml``, or a guest without devices), then the
    sealed manifest."""
    repo = repository(dest)
    disks = disks if disks is not None else {"vda": disk_data(0), "vdb": disk_data(7)}
    with open_index(repo) as index:
        stored = tuple(_store(repo, index, t, data) for t, data in disks.items())
    xml = xml or f"<domain type='kvm'><name>{guest}</name></domain>".encode()
    part = rmanifest.GuestPart(
        rmanifest.Domain(guest, GUEST_UUID, "kvm", hashlib.sha256(xml).hexdigest()),
        manifest_doc(guest, [])["quiesce"],
        (("sda", "cdrom"),),
    )
    when = calendar.timegm(time.strptime(stamp[:16], "%Y%m%dT%H%M%SZ"))
    m = rmanifest.new(guest, "guest", stored, when, guest=part, host="kvm1.example.org")
    name = jobs.publish(repo, m, {refs.DOMAIN_XML: xml})
    return dest / name.rsplit("/", 1)[0]


GUEST_UUID = "6c1b7f3e-2d4a-4f0e-9b8a-3e5d1c2f4a7b"


def _store(repo: Repository, index: ChunkIndex, target: str, data: bytes) -> rmanifest.RepoDisk:
    disk, _counts = store_volume(repo, index, io.BytesIO(data), target=target, size=len(data))
    snapshot = {"kind": "thick", "size": 4 * MiB, "peak_fill_percent": 1.5, "extended": 0}
    return dataclasses.replace(disk, volume=f"vg0/{target}", snapshot=snapshot)


def chunk_path(dest: Path, backup: Path, target: str = "vda", n: int = 0) -> Path:
    """The file of chunk ``n`` of disk ``target`` of ``backup``."""
    doc = read_manifest(backup)
    disk = next(d for d in doc["disks"] if d["target"] == target)
    return dest / layout.chunk_name(disk["chunks"][n])


def edit_manifest(
    folder: Path, edit: Callable[[dict[str, Any]], None], *, reseal: bool = False
) -> None:
    """Change manifest.json in place; ``reseal`` recomputes the seal after the
    edit (someone who knows the format), else the old seal stays."""
    doc = read_manifest(folder)
    edit(doc)
    write_manifest(folder, manifest.seal(doc) if reseal else doc)


def flip_bit(path: Path, offset: int, bit: int = 4) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 1 << bit
    path.write_bytes(bytes(raw))


def truncate(path: Path, keep: int) -> None:
    with path.open("r+b") as f:
        f.truncate(keep)
