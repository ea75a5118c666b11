"""Discovery and planning: guests from libvirt's test driver, their disks
matched against LVs parsed from LVM output captured in the lab."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from unitkit import DIR_POOL, LOGICAL_POOL, domain_xml

from vmsnap import lvm, virt
from vmsnap.discover import Inventory, describe
from vmsnap.errors import ExitCode, UnsupportedDiskError
from vmsnap.models import Guest
from vmsnap.snapshots import plan_guest

RUN_ID = "abcd1234"


def block(target: str, dev: str, extra: str = "") -> str:
    return (
        f"<disk type='block' device='disk'><source dev='{dev}'/>"
        f"<target dev='{target}'/>{extra}</disk>"
    )


def volume(target: str, pool: str, name: str) -> str:
    return (
        f"<disk type='volume' device='disk'><source pool='{pool}' volume='{name}'/>"
        f"<target dev='{target}'/></disk>"
    )


CDROM = (
    "<disk type='file' device='cdrom'><source file='/iso/x.iso'/>"
    "<target dev='hdc'/><readonly/></disk>"
)


@pytest.fixture
def inventory(lvs_report: str) -> Inventory:
    return Inventory(lvm.parse_lvs(lvs_report))


@pytest.fixture
def guests(node_uri: Callable[..., str], inventory: Inventory, tmp_path: Path) -> dict[str, Guest]:
    image = tmp_path / "data.qcow2"
    image.write_bytes(b"\0" * 12345)
    uri = node_uri(
        domain_xml(
            "app",
            block("vda", "/dev/labvg/thick")
            + block("vdb", "/dev/mapper/labvg-thin")
            + f"<disk type='file' device='disk'><source file='{image}'/><target dev='vdc'/></disk>"
            + "<disk type='network' device='disk'><source protocol='rbd' name='p/i'/>"
            "<target dev='vdd'/></disk>"
            + block("vde", "/dev/labvg/thin", "<readonly/>")
            + block("vdf", "/dev/sdzz9")
            + block("vdg", "/dev/labvg/gone")
            + volume("vdh", "labpool", "thick")
            + volume("vdi", "images", "thick")
            + CDROM,
        ),
        domain_xml("thinonly", block("vda", "/dev/mapper/labvg-thin") + CDROM, runstate=3),
        LOGICAL_POOL.format(name="labpool", vg="labvg"),
        DIR_POOL.format(name="images"),
    )
    with virt.connection(uri) as conn:
        return {d.name: describe(d, inventory, conn) for d in conn.domains()}


def test_inventory_finds_lvs_by_every_path(inventory: Inventory) -> None:
    thick = inventory.by_name[("labvg", "thick")]
    assert inventory.for_path("/dev/labvg/thick") is thick
    assert inventory.for_path("/dev/mapper/labvg-thick") is thick
    assert inventory.for_path("/dev/mapper/labvg-pool") is inventory.by_name[("labvg", "pool")]
    assert inventory.for_path("/dev/labvg/nosuch") is None
    assert inventory.for_path("/var/lib/x.qcow2") is None


def test_describe_resolves_each_kind_of_disk(guests: dict[str, Guest]) -> None:
    app = guests["app"]
    assert (app.state, app.hypervisor) == ("running", "kvm")
    disks = {d.target: d for d in app.disks}
    assert sorted(disks) == ["hdc", "vda", "vdb", "vdc", "vdd", "vde", "vdf", "vdg", "vdh", "vdi"]

    def summary(target: str) -> tuple[str | None, str | None, int | None, str | None]:
        d = disks[target]
        return (
            d.volume.full_name if d.volume else None,
            d.volume.kind if d.volume else None,
            d.size,
            d.reason,
        )

    assert summary("vda") == ("labvg/thick", "thick", 67108864, None)
    assert summary("vdb") == ("labvg/thin", "thin", 67108864, None)
    assert summary("vdc") == (None, None, 12345, "file, not an LV")
    assert summary("vdd") == (None, None, None, "network disk")
    assert summary("vde") == ("labvg/thin", "thin", 67108864, "read-only")
    assert summary("vdf") == (None, None, None, "block device, not an LV")
    assert summary("vdg") == (None, None, None, "no LV labvg/gone found")
    assert summary("vdh") == ("labvg/thick", "thick", 67108864, None)
    assert summary("vdi")[0] is None
    assert "images" in str(summary("vdi")[3])
    assert summary("hdc") == (None, None, None, "cdrom")
    assert disks["hdc"].skippable
    assert disks["vde"].skippable
    assert not disks["vda"].skippable


def test_plan_of_thin_disks_needs_no_cow_size(guests: dict[str, Guest]) -> None:
    plan = plan_guest(guests["thinonly"], run_id=RUN_ID)
    (disk,) = plan.disks
    assert (disk.target, disk.volume.full_name, disk.cow_size) == ("vda", "labvg/thin", None)
    assert disk.snapshot_name == f"thin-vmsnap-{RUN_ID}"
    assert plan.skipped == (("hdc", "cdrom"),)
    assert plan.total_bytes == 67108864


def test_plan_refuses_a_disk_that_is_not_an_lv(guests: dict[str, Guest]) -> None:
    with pytest.raises(UnsupportedDiskError) as info:
        plan_guest(guests["app"], run_id=RUN_ID)
    assert info.value.exit_code == ExitCode.UNSUPPORTED_DISK
    assert "vdc" in str(info.value)
    assert "--exclude app:vdc" in str(info.value)


def test_plan_with_excludes(guests: dict[str, Guest]) -> None:
    excludes = frozenset(("app", t) for t in ("vda", "vdc", "vdd", "vdf", "vdg", "vdh", "vdi"))
    plan = plan_guest(guests["app"], run_id=RUN_ID, excludes=excludes)
    assert [d.target for d in plan.disks] == ["vdb"]
    skipped = dict(plan.skipped)
    assert skipped["vda"] == "excluded"
    assert skipped["vde"] == "read-only"
    assert skipped["hdc"] == "cdrom"


def test_excludes_of_another_guest_do_not_apply(guests: dict[str, Guest]) -> None:
    excludes = frozenset({("other", "vda")})
    plan = plan_guest(guests["thinonly"], run_id=RUN_ID, excludes=excludes)
    assert [d.target for d in plan.disks] == ["vda"]


def test_a_guest_with_only_skipped_disks_has_nothing_to_back_up(guests: dict[str, Guest]) -> None:
    excludes = frozenset({("thinonly", "vda")})
    with pytest.raises(UnsupportedDiskError, match="no LV disks"):
        plan_guest(guests["thinonly"], run_id=RUN_ID, excludes=excludes)
