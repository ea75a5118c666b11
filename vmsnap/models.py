"""Frozen values shared by the layers."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from vmsnap.errors import UsageError

DEFAULT_LEVEL = 3  # zstd level of the images
SHUTDOWN_TIMEOUT = 300.0
FILL_WARNING = 70.0  # percent: list warns, watch extends


class QuiesceMode(enum.StrEnum):
    """How a guest is held still while its snapshots are taken (see quiesce.py)."""

    AUTO = "auto"
    FREEZE = "freeze"
    PAUSE = "pause"
    NONE = "none"


@dataclass(frozen=True)
class LogicalVolume:
    vg: str
    name: str
    path: str
    dm_path: str
    size: int
    attr: str
    segtype: str
    origin: str | None = None
    pool: str | None = None
    data_percent: float | None = None
    snap_percent: float | None = None
    metadata_percent: float | None = None
    tags: tuple[str, ...] = ()
    snapshot_invalid: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.vg}/{self.name}"

    @property
    def is_thin(self) -> bool:
        return self.segtype == "thin"

    @property
    def kind(self) -> str:
        return "thin" if self.is_thin else "thick"


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    size: int
    free: int
    extent_size: int


@dataclass(frozen=True)
class DiskSpec:
    """A ``<disk>`` element of a domain's XML, as written there."""

    target: str
    device: str  # disk, cdrom, floppy, lun
    source_type: str
    source: str | None  # a path, a network name, or "pool/volume"
    readonly: bool = False
    pool: str | None = None
    volume_name: str | None = None


@dataclass(frozen=True)
class Disk:
    """A disk with what discovery learnt about it.

    ``volume`` is set when the disk is an LV; ``reason`` says why a disk will not
    be backed up (it is None for a disk that will be).
    """

    spec: DiskSpec
    volume: LogicalVolume | None
    size: int | None
    reason: str | None
    pool: LogicalVolume | None = None  # the thin pool of a thin LV, as discovered

    @property
    def target(self) -> str:
        return self.spec.target

    @property
    def skippable(self) -> bool:
        """A CD-ROM, floppy or read-only disk holds no guest state worth backing up."""
        return self.spec.device in ("cdrom", "floppy") or self.spec.readonly


@dataclass(frozen=True)
class Guest:
    name: str
    uuid: str
    state: str
    hypervisor: str
    disks: tuple[Disk, ...]


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


@dataclass(frozen=True)
class SizeSpec:
    """``--snapshot-size``: an absolute size in bytes or a percentage of the origin."""

    size: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> SizeSpec:
        text = text.strip()
        if text.endswith("%"):
            try:
                pct = float(text[:-1])
            except ValueError:
                pct = -1.0
            if not 0 < pct <= 100:
                raise UsageError(f"bad size {text!r}: a percentage must be in (0, 100]")
            return cls(percent=pct)
        match = _SIZE_RE.match(text)
        if not match or match.group(3).lower() == "i":
            raise UsageError(f"bad size {text!r}: use e.g. 2G, 512M, 10%")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
        if size <= 0:
            raise UsageError(f"bad size {text!r}: must be more than zero")
        return cls(size=size)

    def for_origin(self, origin_size: int) -> int:
        if self.size is not None:
            return self.size
        assert self.percent is not None
        return int(origin_size * self.percent / 100)


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
