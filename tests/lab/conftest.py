"""Lab fixtures: a real volume group on a loop device, with a check after every
test that no snapshot was left behind.

These tests run only inside the lab VM (tests/lab/run); selected anywhere else
they fail loudly rather than skip, so a lab that did not run cannot pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from labkit import POOL, VG, Lab, lv_names, sh

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
def lab(lab_vg: Lab) -> Iterator[Lab]:
    """The VG, with a check after each test that no snapshot was left behind,
    and the test's own LVs removed."""
    before = lv_names()
    yield lab_vg
    leftovers = lv_names("@vmsnap")
    for name in lv_names() - before:
        lab_vg.remove(name)
    assert not leftovers, f"snapshots left behind: {leftovers}"
