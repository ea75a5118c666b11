"""The configuration file, ``/etc/vmsnap/vmsnap.toml`` (TOML, read with tomllib).

Every key is optional; a command-line option wins over the file, and the file
over the built-in default.  An unknown key, a value of the wrong type or a file
that is not TOML is one clear error (exit status 2) naming the file, the key and,
where it can be found, the line.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmsnap.errors import ConfigError, NotFoundError, UsageError
from vmsnap.models import QuiesceMode, SizeSpec
from vmsnap.repo.location import ADDRESSING, S3Options
from vmsnap.retention import Policy

DEFAULT_PATH = Path("/etc/vmsnap/vmsnap.toml")
ENV = "VMSNAP_CONFIG"


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    connect: str | None = None
    dest: str | None = None  # a folder or s3://bucket/prefix (vmsnap.repo.location)
    quiesce: QuiesceMode | None = None
    snapshot_size: SizeSpec | None = None
    level: int | None = None
    thin_pool_limit: float | None = None
    hooks_dir: Path | None = None
    retention: Policy | None = None  # None: no [retention] table
    s3: S3Options = field(default_factory=S3Options)  # the [s3] table
    excludes: frozenset[tuple[str, str]] = frozenset()  # (guest, target) from [guests.NAME]
    skip_guests: frozenset[str] = frozenset()  # [guests.NAME] skip = true: left out of --all
    guests: tuple[str, ...] = field(default=())  # the guests the file names

    def excludes_for(self, guests: set[str]) -> frozenset[tuple[str, str]]:
        """The file's excludes for the guests a run backs up."""
        return frozenset(pair for pair in self.excludes if pair[0] in guests)


def find(option: Path | None) -> Path | None:
    """``--config``, else ``$VMSNAP_CONFIG``, else the default file if it exists."""
    chosen = option or (Path(os.environ[ENV]) if os.environ.get(ENV) else None)
    if chosen is not None:
        if not chosen.is_file():
            raise NotFoundError(f"configuration file {chosen} does not exist")
        return chosen
    return DEFAULT_PATH if DEFAULT_PATH.is_file() else None


def load(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _Reader(path, text).config(doc)


class _Reader:
    """Typed access to the document; every error names the key and its line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def fail(self, key: str, message: str) -> ConfigError:
        line = self._line(key)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {key}: {message}")

    def _line(self, key: str) -> int | None:
        """Best effort: the line of ``key``'s last part after its table's header."""
        table, _sep, leaf = key.rpartition(".")
        start = 0
        if table:
            header = re.compile(r"\s*\[\s*" + r"\s*\.\s*".join(map(_quoted, table.split("."))))
            start = next((i for i, s in enumerate(self.lines) if header.match(s)), 0)
        assign = re.compile(r"\s*" + _quoted(leaf) + r"\s*=")
        for number, text in enumerate(self.lines[start:], start + 1):
            if assign.match(text):
                return number
        return start + 1 if table and start else None

    def known(self, table: Mapping[str, Any], prefix: str, keys: set[str]) -> None:
        for key in table:
            if key not in keys:
                name = f"{prefix}{key}"
                raise self.fail(name, f"unknown key (known: {', '.join(sorted(keys))})")

    def get(
        self,
        table: Mapping[str, Any],
        key: str,
        kind: type | tuple[type, ...],
        what: str,
        name: str,
    ) -> Any:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, kind):
            raise self.fail(name, f"must be {what}, not {value!r}")
        return value

    def flag(self, table: Mapping[str, Any], key: str, name: str) -> bool:
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, not {value!r}")
        return value

    def config(self, doc: dict[str, Any]) -> Config:
        self.known(doc, "", _TOP_KEYS)
        values = {key: read(self, doc) for key, read in _TOP.items()}
        guests = self.get(doc, "guests", dict, "a table of [guests.NAME] tables", "guests") or {}
        return Config(path=self.path, **values, **self.guests(guests))

    def guests(self, tables: dict[str, Any]) -> dict[str, Any]:
        pairs, skipped = set(), set()
        for guest, table in tables.items():
            prefix = f"guests.{guest}"
            if not isinstance(table, dict):
                raise self.fail(prefix, "must be a table")
            self.known(table, f"{prefix}.", {"exclude", "skip"})
            if self.flag(table, "skip", f"{prefix}.skip"):
                skipped.add(guest)
            targets = self.get(
                table, "exclude", list, "a list of disk targets", f"{prefix}.exclude"
            )
            for target in targets or []:
                if not isinstance(target, str) or not target:
                    raise self.fail(f"{prefix}.exclude", f"{target!r} is not a disk target")
                pairs.add((guest, target))
        return {
            "excludes": frozenset(pairs),
            "skip_guests": frozenset(skipped),
            "guests": tuple(sorted(tables)),
        }


def _quoted(key: str) -> str:
    """A TOML key as written: bare, or in quotes."""
    text = re.escape(key)
    return f"(?:{text}|\"{text}\"|'{text}')"


def _text(key: str) -> Any:
    return lambda r, doc: r.get(doc, key, str, "a string", key)


def _path(key: str) -> Any:
    def read(r: _Reader, doc: dict[str, Any]) -> Path | None:
        text = r.get(doc, key, str, "a path (a string)", key)
        return Path(text) if text else None

    return read


def _quiesce(r: _Reader, doc: dict[str, Any]) -> QuiesceMode | None:
    text = r.get(doc, "quiesce", str, "a string", "quiesce")
    if text is None:
        return None
    try:
        return QuiesceMode(text)
    except ValueError:
        raise r.fail("quiesce", f"{text!r} is not one of auto, freeze, pause, none") from None


def _size(r: _Reader, doc: dict[str, Any]) -> SizeSpec | None:
    text = r.get(doc, "snapshot_size", str, 'a size such as "2G" or "20%"', "snapshot_size")
    try:
        return SizeSpec.parse(text) if text is not None else None
    except UsageError as exc:
        raise r.fail("snapshot_size", exc.message) from None


def _number(
    key: str, kind: type | tuple[type, ...], low: float, high: float, prefix: str = ""
) -> Any:
    what = f"{'a whole number' if kind is int else 'a number'} from {low:g} to {high:g}"

    def read(r: _Reader, table: dict[str, Any]) -> Any:
        value = r.get(table, key, kind, what, prefix + key)
        if value is not None and not low <= value <= high:
            raise r.fail(prefix + key, f"must be {what}, not {value!r}")
        return value

    return read


def _retention(r: _Reader, doc: dict[str, Any]) -> Policy | None:
    table = r.get(doc, "retention", dict, "a table", "retention")
    if table is None:
        return None
    keys = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")
    r.known(table, "retention.", set(keys))
    counts = {k: _number(k, int, 0, 999_999, "retention.")(r, table) for k in keys}
    return Policy(**{k: v or 0 for k, v in counts.items()})


_S3_KEYS = (
    "endpoint_url", "region", "addressing_style", "profile", "access_key_id",
    "secret_access_key",
)  # fmt: skip


def _s3(r: _Reader, doc: dict[str, Any]) -> S3Options:
    """[s3]: where the bucket's store is and how to sign in; what it leaves
    out comes from the AWS variables and files, as for the aws command."""
    table = r.get(doc, "s3", dict, "a table", "s3")
    if table is None:
        return S3Options()
    r.known(table, "s3.", set(_S3_KEYS))
    values = {k: r.get(table, k, str, "a string", f"s3.{k}") or None for k in _S3_KEYS}
    style = values["addressing_style"]
    if style is not None and style not in ADDRESSING:
        known = ", ".join(ADDRESSING)
        raise r.fail("s3.addressing_style", f"must be one of {known}, not {style!r}")
    if (values["access_key_id"] is None) != (values["secret_access_key"] is None):
        raise r.fail("s3", "access_key_id and secret_access_key go together")
    return S3Options(**values)


_TOP = {
    "connect": _text("connect"),
    "dest": _text("dest"),
    "quiesce": _quiesce,
    "snapshot_size": _size,
    "level": _number("level", int, 1, 19),
    "thin_pool_limit": _number("thin_pool_limit", (int, float), 1, 100),
    "hooks_dir": _path("hooks_dir"),
    "retention": _retention,
    "s3": _s3,
}
_TOP_KEYS = {*_TOP, "guests"}
