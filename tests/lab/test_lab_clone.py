"""Clone on real LVM: from a backup and from a live template guest."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from labkit import (
    POOL,
    VG,
    VMSNAP,
    Lab,
    MiB,
    SlowWriter,
    disk_xml,
    domain_xml,
    journal_left,
    lv_names,
    node_uri,
    sh,
    sha256_of,
    start_vmsnap,
    stopped,
    vmsnap,
)
from repokit import backed_up, chunk_file

from vmsnap import clone, virt
from vmsnap.errors import ExitCode
from vmsnap.guard import GuardSettings
from vmsnap.hooks import NO_HOOKS
from vmsnap.models import QuiesceMode, SizeSpec
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
    settings = clone.CloneSettings(source="tpl", new_name="web02", hooks=NO_HOOKS)
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
    folder = backed_up(tmp_path, "tpl", uri)  # REPO/backups/tpl/<time>
    work = tmp_path / "out"
    work.mkdir()
    run = subprocess.run(
        [*VMSNAP, "clone", str(folder), "web03", "--no-define", "--xml", str(work / "web03.xml"),
         "--thin-pool", POOL, "--connect", uri],
        capture_output=True, text=True, cwd=work, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    xml = (work / "web03.xml").read_text()
    assert (work / "web03.xml").stat().st_mode & 0o777 == 0o600  # it may hold secrets
    assert f"web03: not defined, XML written to {work / 'web03.xml'}" in run.stdout
    old_uuid = ET.fromstring((folder / "domain.xml").read_text()).findtext("uuid") or ""
    check_new_xml(xml, old_uuid, "web03")
    for target, path in disks.items():
        assert sha256_of(f"/dev/{VG}/web03-{target}") == sha256_of(path)
    run = vmsnap("clone", "--from-backup", "--dest", str(folder.parents[2]), "tpl", "web04",
                 "--at", folder.name, "--connect", uri, "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert (doc["backup"], doc["defined"]) == (str(folder), True)
    for target, path in disks.items():
        assert sha256_of(f"/dev/{VG}/web04-{target}") == sha256_of(path)


def test_clone_from_a_backup_with_a_missing_chunk_makes_nothing(lab: Lab, tmp_path: Path) -> None:
    uri, _disks = template(lab, tmp_path)
    folder = backed_up(tmp_path, "tpl", uri)
    chunk_file(folder, "vdb", 0).unlink()
    before = lv_names()
    run = vmsnap("clone", str(folder), "web07", "--connect", uri)
    assert run.returncode == 17, run.stderr
    assert "is missing" in run.stderr
    assert lv_names() == before
    assert not journal_left()


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


@contextmanager
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "ro"
    folder.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        sh("umount", str(folder), check=False)


def test_clone_no_define_in_a_read_only_folder(lab: Lab, tmp_path: Path) -> None:
    """It printed the XML and wrote NEW_NAME.xml into the current folder: in a
    read-only one it failed after copying every disk (exit 9) and left the new
    LVs behind.  Now the XML goes to stdout, and a file only with --xml, whose
    folder is checked before anything is created."""
    uri, _disks = template(lab, tmp_path)
    folder = backed_up(tmp_path, "tpl", uri)
    old_uuid = ET.fromstring((folder / "domain.xml").read_text()).findtext("uuid") or ""
    before = lv_names()
    with read_only_folder(tmp_path) as ro:
        run = subprocess.run(
            [*VMSNAP, "clone", str(folder), "web05", "--xml", str(ro / "web05.xml"),
             "--no-define", "--connect", uri],
            capture_output=True, text=True, cwd=ro, check=False,
        )  # fmt: skip
        assert run.returncode == ExitCode.DESTINATION, run.stderr
        assert "not writable" in run.stderr
        assert lv_names() == before  # refused before anything was created
        run = subprocess.run(
            [*VMSNAP, "clone", str(folder), "web05", "--no-define", "--connect", uri],
            capture_output=True, text=True, cwd=ro, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert list(ro.iterdir()) == []
    check_new_xml(run.stdout, old_uuid, "web05")  # stdout holds the XML and nothing else
    assert "web05: not defined" in run.stderr
    assert lv_names() - before == {"web05-vda", "web05-vdb"}
    assert not lv_names("@vmsnap_unfinished")


def test_a_live_templates_cow_snapshot_is_guarded_while_copied(
    lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 4 MiB COW snapshot of a template that rewrites 8 MiB while it is
    copied: unguarded it overflowed and the clone failed; the guard grows it."""
    origin = lab.lv("gtpl", 32)
    before = sha256_of(origin)
    uri = node_uri(tmp_path, [domain_xml("gtpl", [disk_xml("vda", origin)])])
    settings = clone.CloneSettings(
        source="gtpl", new_name="gcl", quiesce=QuiesceMode.PAUSE,
        snapshot_size=SizeSpec(size=4 * MiB), define=False,
        hooks=NO_HOOKS, guard=GuardSettings(interval=0.2),
    )  # fmt: skip
    caplog.set_level(logging.INFO, logger="vmsnap.guard")
    with virt.connection(uri) as conn:
        result = clone.clone(conn, settings, SlowWriter(origin))
    assert [d.path for d in result.disks] == [f"/dev/{VG}/gcl-vda"]
    assert sha256_of(f"/dev/{VG}/gcl-vda") == before  # the template's bytes at snapshot time
    assert sha256_of(origin) != before
    assert any("extended by" in r.getMessage() for r in caplog.records)


def test_kill_9_mid_clone_then_cleanup_removes_the_half_written_lvs(
    lab: Lab, tmp_path: Path
) -> None:
    uri, _disks = template(lab, tmp_path)
    before = lv_names()
    proc = start_vmsnap("copying", "clone", "tpl", "web06", "--connect", uri, "--quiesce", "pause")
    stopped(proc)  # the first chunk of the first disk is copied
    assert lv_names("@vmsnap_unfinished") == {"web06-vda", "web06-vdb"}
    assert len(lv_names("@vmsnap")) == 2  # the template's snapshots
    proc.kill()
    proc.communicate()
    run = vmsnap("cleanup", "--json", "--connect", uri)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert sorted(doc["volumes"]) == [f"{VG}/web06-vda", f"{VG}/web06-vdb"]
    assert len(doc["snapshots"]) == 2
    assert lv_names() == before
    assert not journal_left()


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_clone_removes_everything_it_created(
    lab: Lab, tmp_path: Path, signum: int, status: int
) -> None:
    uri, _disks = template(lab, tmp_path)
    before = lv_names()
    proc = start_vmsnap(
        "copying", "clone", "tpl", f"web{signum}", "--connect", uri, "--quiesce", "pause"
    )
    stopped(proc)
    proc.send_signal(signum)
    proc.send_signal(signal.SIGCONT)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == status, err
    assert "interrupted" in err
    assert lv_names() == before  # new LVs and snapshots alike
    assert not journal_left()
