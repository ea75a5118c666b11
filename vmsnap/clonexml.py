"""Turn a template's domain XML into a new guest's: new name, UUID and MAC
addresses, disk sources on the new LVs, everything else as it was.  Pure."""

from __future__ import annotations

import io
import secrets
import uuid
import xml.etree.ElementTree as ET

from vmsnap.errors import UnsupportedDiskError


def _register_namespaces(xml: str) -> None:
    """Keep the template's namespace prefixes (qemu:, test:) on the way out."""
    for _event, (prefix, uri) in ET.iterparse(io.StringIO(xml), events=("start-ns",)):
        if prefix:
            ET.register_namespace(prefix, uri)


def new_mac(old: str | None) -> str:
    """A random MAC with the template's vendor prefix (52:54:00 for qemu/KVM,
    00:16:3e for Xen), locally administered when there was none."""
    prefix = old[:8] if old and len(old) == 17 else "52:54:00"
    tail = secrets.token_bytes(3)
    return prefix + "".join(f":{b:02x}" for b in tail)


def _set_text(root: ET.Element, tag: str, text: str) -> None:
    elem = root.find(tag)
    if elem is None:
        elem = ET.SubElement(root, tag)
    elem.text = text


def _retarget_disk(disk: ET.Element, path: str) -> None:
    disk.set("type", "block")
    for old in disk.findall("source") + disk.findall("backingStore"):
        disk.remove(old)
    source = ET.Element("source", {"dev": path})
    disk.insert(1 if disk.find("driver") is not None else 0, source)


def uuid_of(xml: str) -> str:
    return (ET.fromstring(xml).findtext("uuid") or "").strip()


def clone_xml(
    xml: str,
    *,
    name: str,
    disk_paths: dict[str, str],
    drop_targets: frozenset[str] = frozenset(),
    new_uuid: str | None = None,
) -> str:
    """The new guest's XML.  ``disk_paths`` maps a disk target to its new LV;
    disks in ``drop_targets`` are left out (they would be shared otherwise)."""
    _register_namespaces(xml)
    root = ET.fromstring(xml)
    _set_text(root, "name", name)
    _set_text(root, "uuid", new_uuid or str(uuid.uuid4()))
    devices = root.find("devices")
    if devices is None:
        return ET.tostring(root, encoding="unicode")
    for disk in list(devices.findall("disk")):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        if dev in drop_targets:
            devices.remove(disk)
        elif dev in disk_paths:
            _retarget_disk(disk, disk_paths[dev])
        elif _writable(disk):
            raise UnsupportedDiskError(
                f"disk {dev} of the template would be shared with the clone: "
                "it is not one of the disks being copied"
            )
    for interface in devices.findall("interface"):
        for runtime in interface.findall("target"):  # a tap name of the running template
            interface.remove(runtime)
        for mac in interface.findall("mac"):
            mac.set("address", new_mac(mac.get("address")))
    return ET.tostring(root, encoding="unicode")


def _writable(disk: ET.Element) -> bool:
    return disk.get("device", "disk") not in ("cdrom", "floppy") and disk.find("readonly") is None
