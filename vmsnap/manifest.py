"""The backup manifest (``manifest.json``): the one owner of its format, which
builds it, seals it and reads it back strictly.  The format is specified in
vmsnap-format(5).

The seal is the sha256 of the manifest's canonical JSON: it catches a manifest
that was edited or damaged after it was written.  It is a checksum, not a
signature: whoever can write the folder can recompute it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from vmsnap.errors import IntegrityError, NotFoundError
from vmsnap.store import DOMAIN_XML, MANIFEST

FORMAT = "vmsnap-backup"
FORMAT_VERSION = 2  # what build() writes
KNOWN_VERSIONS = (2,)  # what load() reads
SEAL_KEY = "seal"
SEAL_PREFIX = "sha256:"
SNAPSHOT_KINDS = ("thick", "thin")
MAX_BYTES = 16 << 20  # far above any real manifest; refuses to slurp a huge file
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ManifestDisk:
    target: str
    volume: str
    size: int  # raw bytes: exactly what the image decodes to
    chunk_sha256: str  # of those bytes, see vmsnap.digest
    image: str  # a plain file name inside the backup folder
    compressed_size: int  # of the image file
    snapshot_kind: str  # thick or thin
    snapshot_size: int | None  # COW space; None for a thin snapshot


@dataclass(frozen=True)
class Manifest:
    directory: Path
    format_version: int
    vmsnap_version: str
    host: str
    domain_name: str
    domain_uuid: str
    hypervisor: str
    created: str
    quiesce: dict[str, Any]
    disks: tuple[ManifestDisk, ...]
    skipped: tuple[tuple[str, str], ...]  # (target, reason)
    domain_xml_sha256: str | None = None  # of domain.xml, when the writer recorded it

    def image_path(self, disk: ManifestDisk) -> Path:
        return self.directory / disk.image

    @property
    def total_size(self) -> int:
        return sum(d.size for d in self.disks)


# ---------------------------------------------------------------- times


def created_text(when: float) -> str:
    """A moment as the manifest's ``created`` (and verified.json's) writes it."""
    return time.strftime(CREATED_FORMAT, time.gmtime(when))


def created_time(text: str) -> datetime:
    """A manifest's ``created`` as an aware UTC datetime."""
    return datetime.strptime(text, CREATED_FORMAT).replace(tzinfo=UTC)


# ---------------------------------------------------------------- seal


def canonical(doc: Mapping[str, Any]) -> bytes:
    """The bytes the seal covers: the document without its seal, keys sorted,
    no white space, non-ASCII characters as UTF-8."""
    body = {k: v for k, v in doc.items() if k != SEAL_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(doc: Mapping[str, Any]) -> str:
    return SEAL_PREFIX + hashlib.sha256(canonical(doc)).hexdigest()


def seal(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` with a fresh ``seal`` member last (any old seal is replaced)."""
    body = {k: v for k, v in doc.items() if k != SEAL_KEY}
    return {**body, SEAL_KEY: _digest(body)}


def check_seal(doc: Mapping[str, Any]) -> None:
    """Raise unless ``doc`` carries a seal that matches its contents."""
    found = doc.get(SEAL_KEY)
    if found is None:
        raise IntegrityError("no seal: it was edited, or not written by vmsnap")
    if not isinstance(found, str) or not _is_seal(found):
        raise IntegrityError(f"seal {found!r} is malformed")
    try:
        wanted = _digest(doc)
    except UnicodeEncodeError:
        raise IntegrityError("text that is not valid Unicode (a lone surrogate)") from None
    if found != wanted:
        raise IntegrityError("seal does not match the contents: edited or damaged since the backup")


def _is_seal(text: str) -> bool:
    return text.startswith(SEAL_PREFIX) and bool(_SHA256.fullmatch(text[len(SEAL_PREFIX) :]))


# ---------------------------------------------------------------- reading


def load(backup_dir: Path) -> Manifest:
    """Read and check ``backup_dir/manifest.json``: format, version, seal, fields."""
    path = backup_dir / MANIFEST
    try:
        doc = decode_document(_read(path))
        _check_format(doc)
        check_seal(doc)
        return _parse(doc, backup_dir)
    except IntegrityError as exc:  # every message names the file once
        raise IntegrityError(f"{path}: {exc.message}", hint=exc.hint) from exc


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise NotFoundError(f"{path} is missing: not a backup, or its manifest was lost") from None
    except OSError as exc:
        raise IntegrityError(f"cannot read it: {exc.strerror}") from exc
    if len(data) > MAX_BYTES:
        raise IntegrityError(f"larger than {MAX_BYTES} bytes: not a manifest")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A repeated key would let an edit hide behind a value the seal covered."""
    repeated = sorted(k for k, n in Counter(k for k, _v in pairs).items() if n > 1)
    if repeated:
        raise IntegrityError(f"key {repeated[0]!r} appears twice in one object")
    return dict(pairs)


def _no_constant(name: str) -> NoReturn:
    raise IntegrityError(f"{name} is not a JSON number")


def decode_document(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant
        )
    except UnicodeDecodeError:
        raise IntegrityError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise IntegrityError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise IntegrityError("not a manifest: JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise IntegrityError("not a JSON object")
    return doc


def _check_format(doc: Mapping[str, Any]) -> None:
    """Reject what this reader does not understand, before trusting anything else."""
    if doc.get("format") != FORMAT:
        raise IntegrityError(f"format is {doc.get('format')!r}, not {FORMAT!r}")
    version = doc.get("format_version")
    if type(version) is not int or version not in KNOWN_VERSIONS:
        newer = type(version) is int and version > max(KNOWN_VERSIONS)
        raise IntegrityError(
            f"format_version {version!r} is not one this vmsnap reads "
            f"({', '.join(map(str, KNOWN_VERSIONS))})",
            hint="written by a newer vmsnap?" if newer else None,
        )


class Members:
    """Typed access to one JSON object's members; errors name the member."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise IntegrityError(f"{where} must be an object")
        self.raw: dict[str, Any] = value
        self.where = where

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, kinds: tuple[type, ...], what: str) -> Any:
        if key not in self.raw:
            raise IntegrityError(f"{self.name(key)} is missing")
        value = self.raw[key]
        a_bool = isinstance(value, bool) and bool not in kinds  # JSON true is no integer
        if a_bool or not isinstance(value, kinds):
            raise IntegrityError(f"{self.name(key)} must be {what}, not {value!r}")
        return value

    def text(self, key: str) -> str:
        value: str = self._get(key, (str,), "a string")
        return value

    def count(self, key: str) -> int:
        value: int = self._get(key, (int,), "an integer")
        if value < 0:
            raise IntegrityError(f"{self.name(key)} must not be negative, not {value}")
        return value

    def count_or_null(self, key: str) -> int | None:
        if self._get(key, (int, type(None)), "an integer or null") is None:
            return None
        return self.count(key)

    def number(self, key: str) -> float:
        value: float = self._get(key, (int, float), "a number")
        return value

    def text_or_absent(self, key: str) -> str | None:
        return self.text(key) if key in self.raw else None

    def obj(self, key: str) -> Members:
        return Members(self._get(key, (dict,), "an object"), self.name(key))

    def objects(self, key: str) -> list[Members]:
        items: list[object] = self._get(key, (list,), "an array")
        return [Members(item, f"{self.name(key)}[{i}]") for i, item in enumerate(items)]


def _parse(doc: dict[str, Any], directory: Path) -> Manifest:
    top = Members(doc, "")
    domain = top.obj("domain")
    disks = tuple(_disk(d) for d in top.objects("disks"))
    _check_disks(disks)
    return Manifest(
        directory=directory,
        format_version=top.count("format_version"),
        vmsnap_version=top.text("vmsnap_version"),
        host=top.text("host"),
        domain_name=domain.text("name"),
        domain_uuid=domain.text("uuid"),
        hypervisor=domain.text("hypervisor"),
        domain_xml_sha256=domain.text_or_absent("xml_sha256"),
        created=created_member(top),
        quiesce=_quiesce(top.obj("quiesce")),
        disks=disks,
        skipped=tuple((s.text("target"), s.text("reason")) for s in top.objects("skipped")),
    )


def created_member(top: Members) -> str:
    text = top.text("created")
    try:
        time.strptime(text, CREATED_FORMAT)
    except ValueError:
        raise IntegrityError(f"created {text!r} is not a time like 2026-11-27T04:23:19Z") from None
    return text


def _quiesce(q: Members) -> dict[str, Any]:
    for key in ("requested", "mode", "state_before", "note"):
        q.text(key)
    q.number("window_seconds")
    q.count_or_null("frozen_filesystems")
    return q.raw


def _disk(d: Members) -> ManifestDisk:
    snapshot = d.obj("snapshot")
    disk = ManifestDisk(
        target=d.text("target"),
        volume=d.text("volume"),
        size=d.count("size"),
        chunk_sha256=d.text("chunk_sha256"),
        image=d.text("image"),
        compressed_size=d.count("compressed_size"),
        snapshot_kind=snapshot.text("kind"),
        snapshot_size=snapshot.count_or_null("size"),
    )
    if not _SHA256.fullmatch(disk.chunk_sha256):
        raise IntegrityError(f"{d.name('chunk_sha256')} must be 64 lower-case hex digits")
    if disk.snapshot_kind not in SNAPSHOT_KINDS:
        raise IntegrityError(
            f"{d.name('snapshot.kind')} {disk.snapshot_kind!r} is not thick or thin"
        )
    _check_image_name(disk.image)
    return disk


def _check_image_name(name: str) -> None:
    """An image must be a plain file name inside the backup folder."""
    if not name or "/" in name or "\0" in name or name.startswith("."):
        raise IntegrityError(f"image name {name!r} is not a plain file name inside the folder")
    if name in (MANIFEST, DOMAIN_XML):
        raise IntegrityError(f"image name {name!r} is the name of another file of the backup")


def _check_disks(disks: tuple[ManifestDisk, ...]) -> None:
    if not disks:
        raise IntegrityError("the manifest lists no disks")
    _unique("target", [d.target for d in disks])
    _unique("image", [d.image for d in disks])


def _unique(what: str, values: list[str]) -> None:
    repeated = sorted(v for v, n in Counter(values).items() if n > 1)
    if repeated:
        raise IntegrityError(f"two disks have the same {what} {repeated[0]!r}")
