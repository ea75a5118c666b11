"""The new guest's XML: new identity, new disks, everything else kept."""

# ruff: noqa: E501 - the template is real domain XML, one element per line

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from vmsnap.clonexml import clone_xml, new_mac, uuid_of
from vmsnap.errors import UnsupportedDiskError

TEMPLATE = """<domain type='xen' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>tpl</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory unit='KiB'>524288</memory>
  <os><type>xen</type></os>
  <devices>
    <disk type='block' device='disk'><driver name='phy'/><source dev='/dev/vg0/tpl-root'/><target dev='xvda' bus='xen'/></disk>
    <disk type='volume' device='disk'><source pool='lvpool' volume='tpl-data'/><target dev='xvdb' bus='xen'/></disk>
    <disk type='file' device='disk'><source file='/srv/scratch.img'/><target dev='xvdc' bus='xen'/></disk>
    <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc'/><readonly/></disk>
    <interface type='bridge'><mac address='00:16:3e:aa:bb:cc'/><source bridge='xenbr0'/></interface>
    <interface type='bridge'><source bridge='xenbr1'/></interface>
  </devices>
  <qemu:commandline><qemu:arg value='-nodefaults'/></qemu:commandline>
</domain>"""


def test_new_identity_and_disks() -> None:
    out = clone_xml(
        TEMPLATE,
        name="web02",
        disk_paths={"xvda": "/dev/vg0/web02-xvda", "xvdb": "/dev/vg1/web02-xvdb"},
        drop_targets=frozenset({"xvdc"}),
        new_uuid="99999999-8888-7777-6666-555555555555",
    )
    root = ET.fromstring(out)
    assert root.findtext("name") == "web02"
    assert uuid_of(out) == "99999999-8888-7777-6666-555555555555"
    disks = {d.find("target").get("dev"): d for d in root.iter("disk")}  # type: ignore[union-attr]
    assert set(disks) == {"xvda", "xvdb", "hdc"}  # the excluded file disk is not shared
    assert disks["xvda"].find("source").get("dev") == "/dev/vg0/web02-xvda"  # type: ignore[union-attr]
    assert disks["xvdb"].get("type") == "block"
    assert disks["xvdb"].find("source").attrib == {"dev": "/dev/vg1/web02-xvdb"}  # type: ignore[union-attr]
    assert disks["hdc"].find("source").get("file") == "/iso/x.iso"  # type: ignore[union-attr]
    assert disks["xvda"].find("driver").get("name") == "phy"  # type: ignore[union-attr]
    macs = [m.get("address") for m in root.iter("mac")]
    assert len(macs) == 1
    assert macs[0] != "00:16:3e:aa:bb:cc"
    assert macs[0] is not None
    assert macs[0].startswith("00:16:3e:")  # Xen's prefix kept
    assert "qemu:commandline" in out  # namespaced elements keep their prefix
    assert root.findtext("memory") == "524288"


def test_a_disk_that_is_not_copied_is_never_shared() -> None:
    with pytest.raises(UnsupportedDiskError, match="xvdc"):
        clone_xml(TEMPLATE, name="x", disk_paths={"xvda": "/a", "xvdb": "/b"})


def test_runtime_tap_name_is_dropped() -> None:
    live = TEMPLATE.replace(
        "<source bridge='xenbr0'/>", "<source bridge='xenbr0'/><target dev='vif1.0'/>"
    )
    out = clone_xml(live, name="x", disk_paths={"xvda": "/a", "xvdb": "/b", "xvdc": "/c"})
    assert "vif1.0" not in out


def test_fresh_uuid_each_time() -> None:
    paths = {"xvda": "/a", "xvdb": "/b", "xvdc": "/c"}
    a = uuid_of(clone_xml(TEMPLATE, name="a", disk_paths=paths))
    b = uuid_of(clone_xml(TEMPLATE, name="b", disk_paths=paths))
    assert a != b
    assert re.fullmatch(r"[0-9a-f-]{36}", a)


def test_new_mac_format() -> None:
    assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", new_mac(None))
    assert new_mac("52:54:00:01:02:03").startswith("52:54:00:")
    assert len({new_mac(None) for _ in range(50)}) > 45
