"""Clone on real LVM: from a backup and from a live template guest."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from labkit import (
    POOL,
    VG,
    VMSNAP,
    Lab,
    disk_xml,
    domain_xml,
    lv_names,
    node_uri,
    sha256_of,
    vmsnap,
)

from vmsnap import clone, virt
from vmsnap.errors import ExitCode
from vmsnap.progress import NoProgress

MAC = "52:54:00:12:34:56"
NIC = f"      <interface type='bridge'><mac address='{MAC}'/><source bridge='br0'/></interface>"


def template(lab: Lab, tmp_path: Path) -> tuple[str, dict[str, str]]:
    disks = {"vda": lab.lv("tpl-root", 12), "vdb": lab.lv("tpl-data", 16, thin=True)}
    xml = domain_xml("tpl", [disk_xml(t, p) for t, p in disks.items()] + [NIC])
    return node_uri(tmp_path, [xml]), disks


def check_new_xml(xml: str, old_uuid: str, name: str) -> None:
    root = ET.fromstring(xml)
    assert root.findtext("name") == name
    assert root.findtext("uuid") not in (None, "", old_uuid)
    macs = [m.get("address") for m in root.iter("mac")]
    assert macs
    assert MAC not in macs
    assert all(m is not None and m.startswith("52:54:00:") for m in macs)
    sources = {d.find("target").get("dev"): d.find("source").get("dev")  # type: ignore[union-attr]
               for d in root.iter("disk")}  # fmt: skip
    assert sources == {"vda": f"/dev/{VG}/{name}-vda", "vdb": f"/dev/{VG}/{name}-vdb"}
    validator = shutil.which("virt-xml-validate")
    if validator:
        path = Path(f"/tmp/{name}.xml")
        path.write_text(xml)
        subprocess.run([validator, str(path), "domain"], check=True, capture_output=True)


def test_clone_from_live_template(lab: Lab, tmp_path: Path) -> None:
    uri, disks = template(lab, tmp_path)
    sums = {t: sha256_of(p) for t, p in disks.items()}
    settings = clone.CloneSettings(source="tpl", new_name="web02")
    with virt.connection(uri) as conn:
        old_uuid = conn.domain("tpl").uuid
        result = clone.clone(conn, settings, NoProgress())
        assert conn.domain("tpl").state() == "running"  # the template was released
        new = conn.domain("web02")  # libvirt accepted the new definition
        assert new.uuid == result.uuid
        check_new_xml(new.xml(), old_uuid, "web02")
    assert sha256_of(f"/dev/{VG}/web02-vda") == sums["vda"]
    assert sha256_of(f"/dev/{VG}/web02-vdb") == sums["vdb"]
    assert {t: sha256_of(p) for t, p in disks.items()} == sums  # template unchanged
    attrs = subprocess.run(["lvs", "--noheadings", "-o", "segtype", f"{VG}/web02-vdb"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert attrs.strip() == "thin"  # a thin template disk stays thin


def test_clone_from_backup_no_define(lab: Lab, tmp_path: Path) -> None:
    uri, disks = template(lab, tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    assert vmsnap("backup", "tpl", "--dest", str(dest), "--connect", uri).returncode == 0
    (folder,) = (dest / "tpl").iterdir()
    work = tmp_path / "out"
    work.mkdir()
    run = subprocess.run(
        [*VMSNAP, "clone", str(folder), "web03", "--no-define",
         "--thin-pool", POOL, "--connect", uri],
        capture_output=True, text=True, cwd=work, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    xml = (work / "web03.xml").read_text()
    assert "<name>web03</name>" in run.stdout
    old_uuid = ET.fromstring((folder / "domain.xml").read_text()).findtext("uuid") or ""
    check_new_xml(xml, old_uuid, "web03")
    for target, path in disks.items():
        assert sha256_of(f"/dev/{VG}/web03-{target}") == sha256_of(path)


def test_clone_refuses_before_creating_anything(lab: Lab, tmp_path: Path) -> None:
    uri, _disks = template(lab, tmp_path)
    lab.lv("taken-vdb", 4)
    before = lv_names()
    run = vmsnap("clone", "tpl", "tpl", "--connect", uri)  # the name exists
    assert run.returncode == ExitCode.EXISTS == 14
    assert "already exists" in run.stderr
    run = vmsnap("clone", "tpl", "taken", "--connect", uri)  # an LV name is taken
    assert run.returncode == ExitCode.EXISTS
    assert "taken-vdb" in run.stderr
    run = vmsnap("clone", "tpl", "huge", "--vg", VG, "--connect", uri, "--thin-pool", "nopool")
    assert run.returncode == 3
    assert lv_names() == before
