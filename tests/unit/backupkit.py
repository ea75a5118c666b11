"""Backup folders built by hand, as ``vmsnap backup`` writes them: real zstd
images from ``image.compress`` and a sealed manifest with the fields of
``manifest.build()``; and ways to damage them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmsnap import image, manifest, store

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
    """An unsealed manifest, member for member as manifest.build() makes it."""
    return {
        "format": "vmsnap-backup",
        "format_version": 2,
        "vmsnap_version": "0.1.0",
        "host": "kvm1.example.org",
        "domain": {
            "name": guest,
            "uuid": "6c1b7f3e-2d4a-4f0e-9b8a-3e5d1c2f4a7b",
            "hypervisor": "kvm",
        },
        "created": "2026-11-27T04:23:19Z",
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


def write_image(folder: Path, target: str, data: bytes) -> dict[str, Any]:
    """Write ``target``'s image into ``folder``; its manifest entry."""
    name = f"{store.safe_component(target)}.img.zst"
    with (folder / name).open("wb") as out:
        stats = image.compress(_Reader(data), out, size=len(data))
    return {
        "target": target,
        "volume": f"vg0/{target}",
        "size": stats.size,
        "chunk_sha256": stats.chunk_sha256,
        "image": name,
        "compressed_size": stats.compressed_size,
        "snapshot": {"kind": "thick", "size": 4 * MiB},
    }


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, size: int = -1, /) -> bytes:
        end = len(self.data) if size < 0 else self.pos + size
        chunk, self.pos = self.data[self.pos : end], min(end, len(self.data))
        return chunk


def write_manifest(folder: Path, doc: dict[str, Any]) -> None:
    """As store.write_json writes it: indented, non-ASCII escaped."""
    (folder / store.MANIFEST).write_text(json.dumps(doc, indent=2) + "\n")


def read_manifest(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / store.MANIFEST).read_text())
    return doc


def make_backup(
    dest: Path,
    guest: str = "web01",
    stamp: str = STAMP,
    disks: dict[str, bytes] | None = None,
) -> Path:
    """A published backup folder ``dest/<guest>/<stamp>`` with a sealed manifest."""
    folder = dest / store.safe_component(guest) / stamp
    folder.mkdir(parents=True)
    disks = disks if disks is not None else {"vda": disk_data(0), "vdb": disk_data(7)}
    entries = [write_image(folder, target, data) for target, data in disks.items()]
    (folder / store.DOMAIN_XML).write_text(f"<domain type='kvm'><name>{guest}</name></domain>")
    write_manifest(folder, manifest.seal(manifest_doc(guest, entries)))
    return folder


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
