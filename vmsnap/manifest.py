"""The rules every manifest follows (vmsnap-format(5), MANIFEST): its seal, its
strict JSON decoding, typed member access, and its times.  What a backup's
manifest holds is vmsnap.repo.manifest's.

The seal is the sha256 of the manifest's canonical JSON: it catches a manifest
that was edited or damaged after it was written.  It is a checksum, not a
signature: whoever can write the repository can recompute it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

from vmsnap.errors import IntegrityError

FORMAT = "vmsnap-backup"
SEAL_KEY = "seal"
SEAL_PREFIX = "sha256:"
SNAPSHOT_KINDS = ("thick", "thin")
MAX_BYTES = 16 << 20  # far above any real manifest; refuses to slurp a huge file
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


def created_member(top: Members) -> str:
    text = top.text("created")
    try:
        time.strptime(text, CREATED_FORMAT)
    except ValueError:
        raise IntegrityError(f"created {text!r} is not a time like 2026-11-27T04:23:19Z") from None
    return text
