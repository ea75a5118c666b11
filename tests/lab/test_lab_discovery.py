"""`vmsnap list` on real LVs: every way a guest can name an LV."""

from __future__ import annotations

import json
from pathlib import Path

from labkit import VG, Lab, disk_xml, domain_xml, node_uri, vmsnap

MiB = 1 << 20


def test_list_resolves_every_kind_of_lv_reference(lab: Lab, tmp_path: Path) -> None:
    lab.lv("web-root", 8)  # a dash: /dev/mapper/labvg-web--root
    lab.lv("web-data", 8)
    lab.lv("db-thin", 16, thin=True)
    lab.lv("vol1", 4)
    uri = node_uri(
        tmp_path,
        [
            domain_xml(
                "web01",
                [
                    disk_xml("xvda", f"/dev/{VG}/web-root"),
                    disk_xml("xvdb", f"/dev/mapper/{VG}-web--data"),
                    disk_xml("xvdc", "lvpool/vol1", kind="volume"),
                    disk_xml("xvdd", "/var/lib/images/x.qcow2", kind="file"),
                    disk_xml("hdc", "/iso/boot.iso", kind="file", device="cdrom"),
                ],
                xen=True,
            ),
            domain_xml("db01", [disk_xml("vda", f"/dev/{VG}/db-thin")]),
        ],
    )
    out = vmsnap("list", "--json", "--connect", uri, check=True).stdout
    guests = {g["name"]: g for g in json.loads(out)}
    web = {d["target"]: d for d in guests["web01"]["disks"]}
    assert web["xvda"]["volume"] == f"{VG}/web-root"
    assert web["xvda"]["kind"] == "thick"
    assert web["xvda"]["size"] == 8 * MiB
    assert web["xvdb"]["volume"] == f"{VG}/web-data"
    assert web["xvdc"]["volume"] == f"{VG}/vol1"
    assert web["xvdd"]["volume"] is None
    assert "file" in web["xvdd"]["reason"]
    assert web["hdc"]["reason"] == "cdrom"
    db = guests["db01"]["disks"][0]
    assert (db["volume"], db["kind"], db["size"]) == (f"{VG}/db-thin", "thin", 16 * MiB)
    assert guests["web01"]["state"] == "running"

    text = vmsnap("list", "--connect", uri, check=True).stdout
    assert f"{VG}/web-data" in text
    assert "skip: cdrom" in text
