"""Discovery: a guest's disks from libvirt, matched to LVs from LVM."""

from __future__ import annotations

import os

from vmsnap import lvm
from vmsnap.models import Disk, DiskSpec, Guest, LogicalVolume
from vmsnap.virt import Connection, Domain, parse_disks

REASONS = {
    "file": "file, not an LV",
    "network": "network disk",
    "dir": "directory, not an LV",
}


class Inventory:
    """All LVs of the host, indexed by every path that names them."""

    def __init__(self, volumes: list[LogicalVolume]) -> None:
        self.by_name = {(v.vg, v.name): v for v in volumes}
        self.by_path: dict[str, LogicalVolume] = {}
        for v in volumes:
            for path in (v.path, v.dm_path):
                if path:
                    self.by_path[path] = v
                    self.by_path[os.path.realpath(path)] = v

    @classmethod
    def load(cls) -> Inventory:
        return cls(lvm.list_volumes())

    def for_path(self, path: str) -> LogicalVolume | None:
        found = self.by_path.get(path)
        if found is None:
            named = lvm.path_to_vg_lv(path)
            found = self.by_name.get(named) if named else None
        if found is None and os.path.exists(path):
            found = self.by_path.get(os.path.realpath(path))
        return found


def _block_reason(path: str | None) -> str:
    if path is None:
        return "no source (empty drive)"
    named = lvm.path_to_vg_lv(path)
    if named:
        return f"no LV {named[0]}/{named[1]} found"
    return "block device, not an LV"


def _file_size(path: str | None) -> int | None:
    try:
        return os.stat(path).st_size if path else None
    except OSError:
        return None


def resolve_disk(spec: DiskSpec, inventory: Inventory, conn: Connection) -> Disk:
    volume: LogicalVolume | None = None
    reason: str | None = None
    if spec.device in ("cdrom", "floppy"):
        reason = spec.device
    elif spec.source_type == "block" and spec.source:
        volume = inventory.for_path(spec.source)
        reason = None if volume else _block_reason(spec.source)
    elif spec.source_type == "volume" and spec.pool and spec.volume_name:
        vg = conn.pool_vg(spec.pool)
        volume = inventory.by_name.get((vg, spec.volume_name)) if vg else None
        reason = None if volume else f"pool {spec.pool} is not an LVM pool or has no such LV"
    else:
        reason = REASONS.get(spec.source_type, f"{spec.source_type} disk, not an LV")
    if volume is None and reason is None:
        reason = _block_reason(spec.source)
    if spec.readonly and reason is None:
        reason = "read-only"
    size = volume.size if volume else _file_size(spec.source)
    pool = inventory.by_name.get((volume.vg, volume.pool)) if volume and volume.pool else None
    return Disk(spec=spec, volume=volume, size=size, reason=reason, pool=pool)


def describe(dom: Domain, inventory: Inventory, conn: Connection) -> Guest:
    xml = dom.xml()
    disks = tuple(resolve_disk(s, inventory, conn) for s in parse_disks(xml))
    return Guest(
        name=dom.name,
        uuid=dom.uuid,
        state=dom.state(),
        hypervisor=dom.hypervisor(),
        disks=disks,
    )
