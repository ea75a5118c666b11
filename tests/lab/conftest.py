"""Lab fixtures: a real volume group on a loop device, with a check after every
test that no snapshot was left behind.

These tests run only inside the lab VM (tests/lab/run); selected anywhere else
they fail loudly rather than skip, so a lab that did not run cannot pass.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import (
    POOL,
    REAL_DOMAIN,
    VG,
    Lab,
    RealGuest,
    lv_names,
    real_disk_xml,
    sh,
    start_libvirtd,
    virsh,
)

HERE = os.path.dirname(__file__)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.path).startswith(HERE):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_vg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.environ.get("VMSNAP_LAB") != "1":
        pytest.fail("lab tests run inside the lab VM: use tests/lab/run (make test)")
    backing = tmp_path_factory.mktemp("pv") / "pv.img"
    sh("truncate", "-s", "1200M", str(backing))
    loop = sh("losetup", "-f", "--show", str(backing)).stdout.strip()
    sh("pvcreate", "-q", loop)
    sh("vgcreate", "-q", VG, loop)
    sh("lvcreate", "-q", "-T", "-L", "256m", f"{VG}/{POOL}")
    try:
        yield Lab(vg=VG, pool=POOL)
    finally:
        sh("vgremove", "-f", VG, check=False)
        sh("pvremove", "-f", loop, check=False)
        sh("losetup", "-d", loop, check=False)


@pytest.fixture
def lab(lab_vg: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """The VG, with a check after each test that no snapshot was left behind,
    and the test's own LVs removed; each test has its own chunk index."""
    monkeypatch.setenv("VMSNAP_CACHE_DIR", str(tmp_path / "cache"))
    before = lv_names()
    yield lab_vg
    leftovers = lv_names("@vmsnap")
    for name in lv_names() - before:
        lab_vg.remove(name)
    assert not leftovers, f"snapshots left behind: {leftovers}"


@pytest.fixture(scope="session")
def libvirtd(lab_vg: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real libvirtd (qemu TCG guests), started once; stopped by its own pid."""
    state = tmp_path_factory.mktemp("libvirtd")
    uri = start_libvirtd(state)
    try:
        yield uri
    finally:
        pid = int((state / "libvirtd.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)


@pytest.fixture
def real_guest(libvirtd: str, tmp_path: Path) -> Iterator[RealGuest]:
    """Define and start qemu guests (no OS: the BIOS waits) on the given LVs."""
    made: list[str] = []

    def make(name: str, disks: dict[str, str]) -> str:
        xml = REAL_DOMAIN.format(
            name=name, disks="\n".join(real_disk_xml(t, p) for t, p in disks.items())
        )
        path = tmp_path / f"{name}.xml"
        path.write_text(xml)
        virsh(libvirtd, "define", str(path))
        made.append(name)
        virsh(libvirtd, "start", name)
        return name

    yield make
    for name in made:
        virsh(libvirtd, "destroy", name, check=False)
        virsh(libvirtd, "undefine", name, check=False)
