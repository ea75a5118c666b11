"""Names of the objects in a repository, in one place.

``config`` and ``epoch`` at the top, ``chunks/<2 hex>/<id>.zst`` for the
chunks, ``backups/<guest>/<UTC time>/manifest.json`` for the backups.  A
chunk's id is the sha256 of its raw bytes (:class:`Naming`): a repository that
names chunks by a keyed digest (encryption, later) changes only that class.
"""

from __future__ import annotations

import re

from vmsnap.errors import IntegrityError
from vmsnap.store import safe_component

CONFIG = "config"
EPOCH = "epoch"
CHUNKS = "chunks/"
BACKUPS = "backups/"
MANIFEST = "manifest.json"
CHUNK_SUFFIX = ".zst"
_ID = re.compile(r"[0-9a-f]{64}")
_COMPONENT = re.compile(r"[^/\x00]+")


class Naming:
    """How a chunk is named: by the sha256 of its raw bytes, which the writer
    has computed already for the volume digest (so naming costs nothing)."""

    digest = "sha256"

    def chunk_id(self, sha256_hex: str) -> str:
        return sha256_hex


def is_chunk_id(text: object) -> bool:
    return isinstance(text, str) and _ID.fullmatch(text) is not None


def chunk_name(chunk_id: str) -> str:
    """The object name of a chunk; anything but 64 lower-case hex digits is
    refused here, so no manifest can make a reader open another path."""
    if not is_chunk_id(chunk_id):
        raise IntegrityError(f"{chunk_id!r} is not a chunk id (64 lower-case hex digits)")
    return f"{CHUNKS}{chunk_id[:2]}/{chunk_id}{CHUNK_SUFFIX}"


def chunk_of(name: str) -> str | None:
    """The chunk id an object name stands for, or None for any other object."""
    prefix, _sep, rest = name.partition("/")
    folder, _sep, file = rest.partition("/")
    chunk_id = file.removesuffix(CHUNK_SUFFIX)
    well_formed = prefix + "/" == CHUNKS and file.endswith(CHUNK_SUFFIX)
    if well_formed and is_chunk_id(chunk_id) and folder == chunk_id[:2]:
        return chunk_id
    return None


def guest_prefix(guest: str) -> str:
    return f"{BACKUPS}{safe_component(guest)}/"


def manifest_name(guest: str, stamp: str) -> str:
    return f"{guest_prefix(guest)}{stamp}/{MANIFEST}"


def check_name(name: str) -> None:
    """An object name: ``/``-separated components, none empty, none ``.`` or
    ``..``, none starting with a dot (temporary names are dotted)."""
    parts = name.split("/")
    if not all(_COMPONENT.fullmatch(p) and not p.startswith(".") for p in parts):
        raise ValueError(f"not an object name: {name!r}")
