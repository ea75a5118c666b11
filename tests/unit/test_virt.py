"""virt.py: disk and pool parsing on real domain XML, and the connection,
guests and quiesce window against libvirt's test driver."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from unitkit import DIR_POOL, LOGICAL_POOL, domain_xml

from vmsnap import virt
from vmsnap.errors import (
    ExitCode,
    IntegrityError,
    LeftBehindError,
    LibvirtError,
    NotFoundError,
    VmsnapError,
)
from vmsnap.models import DiskSpec, QuiesceMode
from vmsnap.quiesce import quiesced
from vmsnap.virt import Domain

# A Xen domU as `virsh dumpxml` prints it (libxl driver), with the disks vmsnap meets.
XEN_DOMU = """\
<domain type='xen' id='3'>
  <name>XenGuest2</name>
  <uuid>c7a5fdbd-cdaf-9455-926a-d65c16db1809</uuid>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>2</vcpu>
  <bootloader>/usr/lib/xen-4.17/bin/pygrub</bootloader>
  <os><type arch='x86_64' machine='xenpv'>linux</type></os>
  <devices>
    <disk type='block' device='disk'>
      <driver name='phy'/>
      <source dev='/dev/HostVG/XenGuest2'/>
      <target dev='xvda' bus='xen'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/data.qcow2'/>
      <target dev='xvdb' bus='xen'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/iso/debian-12.iso'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='raw'/>
      <source pool='vgpool' volume='lv1'/>
      <target dev='xvdc' bus='xen'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='rbd' name='rbdpool/image1'>
        <host name='mon1.example.org' port='6789'/>
      </source>
      <target dev='xvdd' bus='xen'/>
    </disk>
    <disk type='network' device='disk'>
      <source protocol='nbd'><host name='nbd.example.org' port='10809'/></source>
      <target dev='xvde' bus='xen'/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='hdd' bus='ide'/>
      <readonly/>
    </disk>
    <interface type='bridge'><source bridge='xenbr0'/></interface>
  </devices>
</domain>
"""


def test_parse_disks_of_a_xen_domu() -> None:
    assert virt.parse_disks(XEN_DOMU) == [
        DiskSpec("xvda", "disk", "block", "/dev/HostVG/XenGuest2"),
        DiskSpec("xvdb", "disk", "file", "/var/lib/libvirt/images/data.qcow2"),
        DiskSpec("hdc", "cdrom", "file", "/iso/debian-12.iso", readonly=True),
        DiskSpec("xvdc", "disk", "volume", "vgpool/lv1", pool="vgpool", volume_name="lv1"),
        DiskSpec("xvdd", "disk", "network", "rbdpool/image1"),
        DiskSpec("xvde", "disk", "network", "nbd"),
        DiskSpec("hdd", "cdrom", "file", None, readonly=True),
    ]


def test_parse_disks_defaults() -> None:
    xml = (
        "<domain><devices>"
        "<disk><source file='/img'/><target dev='vda'/></disk>"
        "<disk type='dir' device='floppy'><source dir='/srv/fat'/></disk>"
        "</devices></domain>"
    )
    assert virt.parse_disks(xml) == [
        DiskSpec("vda", "disk", "file", "/img"),
        DiskSpec("?", "floppy", "dir", "/srv/fat"),
    ]


def test_parse_disks_ignores_disks_outside_devices() -> None:
    xml = "<domain><metadata><disk type='block'/></metadata><devices/></domain>"
    assert virt.parse_disks(xml) == []


@pytest.mark.parametrize(
    ("xml", "vg"),
    [
        (LOGICAL_POOL.format(name="vgpool", vg="vg0"), "vg0"),
        (LOGICAL_POOL.format(name="vgpool", vg="HostVG"), "HostVG"),
        # a logical pool without <source><name> is named after its VG
        (
            "<pool type='logical'><name>vg1</name><target><path>/dev/vg1</path></target></pool>",
            "vg1",
        ),
        (DIR_POOL.format(name="images"), None),
        ("<pool type='disk'><name>sdb</name><source><name>sdb</name></source></pool>", None),
    ],
)
def test_parse_logical_pool(xml: str, vg: str | None) -> None:
    assert virt.parse_logical_pool(xml) == vg


# ---------------------------------------------------------------- the test driver

WEB01_DISKS = (
    "<disk type='block' device='disk'><source dev='/dev/vg0/web01-root'/>"
    "<target dev='xvda' bus='xen'/></disk>"
)


@pytest.fixture
def uri(node_uri: Callable[..., str]) -> str:
    return node_uri(
        domain_xml("web01", WEB01_DISKS, kind="xen"),
        domain_xml("db01", "", runstate=3),
        domain_xml("app", ""),
        LOGICAL_POOL.format(name="vgpool", vg="vg0"),
        DIR_POOL.format(name="images"),
    )


def test_connection_lists_guests_sorted(uri: str) -> None:
    with virt.connection(uri) as conn:
        assert conn.uri == uri
        assert [d.name for d in conn.domains()] == ["app", "db01", "web01"]
        web01 = conn.domain("web01")
        assert web01.state() == "running"
        assert web01.hypervisor() == "xen"
        assert len(web01.uuid) == 36
        assert virt.parse_disks(web01.xml())[0].source == "/dev/vg0/web01-root"
        assert conn.domain("db01").state() == "paused"


def test_pool_vg(uri: str) -> None:
    with virt.connection(uri) as conn:
        assert conn.pool_vg("vgpool") == "vg0"
        assert conn.pool_vg("images") is None
        assert conn.pool_vg("nosuch") is None


def test_unknown_guest_is_not_found(uri: str) -> None:
    with virt.connection(uri) as conn, pytest.raises(NotFoundError) as info:
        conn.domain("nosuch")
    assert info.value.exit_code == ExitCode.NOT_FOUND
    assert "nosuch" in str(info.value)


def test_connection_failure_is_a_libvirt_error() -> None:
    with pytest.raises(LibvirtError) as info, virt.connection("test:///nonexistent/node.xml"):
        pass
    assert info.value.exit_code == ExitCode.LIBVIRT
    assert "test:///nonexistent/node.xml" in str(info.value)


# ---------------------------------------------------------------- quiesce


def test_auto_freezes_a_running_guest_and_thaws_it(uri: str) -> None:
    with virt.connection(uri) as conn:
        dom = conn.domain("web01")
        with quiesced(dom, QuiesceMode.AUTO) as window:
            assert window.used == "freeze"
            assert window.frozen_filesystems
            assert dom.freeze() == 0  # all already frozen
        assert window.state_before == "running"
        assert window.seconds >= 0
        assert dom.freeze() == window.frozen_filesystems  # thawed: they freeze again
        dom.thaw()
        assert dom.state() == "running"


def test_pause_pauses_and_resumes(uri: str) -> None:
    with virt.connection(uri) as conn:
        dom = conn.domain("web01")
        with quiesced(dom, QuiesceMode.PAUSE) as window:
            assert dom.state() == "paused"
        assert (window.used, window.frozen_filesystems) == ("pause", None)
        assert dom.state() == "running"


def test_a_paused_guest_is_left_alone_and_stays_paused(uri: str) -> None:
    with virt.connection(uri) as conn:
        dom = conn.domain("db01")
        for mode in (QuiesceMode.AUTO, QuiesceMode.PAUSE, QuiesceMode.FREEZE):
            with quiesced(dom, mode) as window:
                pass
            assert window.used == "none"
            assert window.state_before == "paused"
            assert "paused" in window.note
            assert dom.state() == "paused"


def test_mode_none_does_nothing(uri: str) -> None:
    with virt.connection(uri) as conn:
        dom = conn.domain("web01")
        with quiesced(dom, QuiesceMode.NONE) as window:
            assert dom.freeze() > 0  # nothing was frozen by the window
            dom.thaw()
        assert window.used == "none"
        assert dom.state() == "running"


def test_release_failure_is_left_behind(uri: str) -> None:
    with virt.connection(uri) as conn:
        dom = conn.domain("web01")
        with pytest.raises(LeftBehindError) as info:
            with quiesced(dom, QuiesceMode.PAUSE):
                dom.resume()  # someone else resumed it: our resume then fails
        assert info.value.exit_code == ExitCode.LEFT_BEHIND
        assert "virsh domstate web01" in str(info.value)


def resume_then_fail(dom: Domain) -> None:
    with quiesced(dom, QuiesceMode.PAUSE):
        dom.resume()  # our resume will fail
        raise IntegrityError("the body failed")


def test_release_failure_does_not_hide_the_body_error(uri: str) -> None:
    with virt.connection(uri) as conn:
        dom = conn.domain("web01")
        with pytest.raises(VmsnapError) as info:
            resume_then_fail(dom)
    err = info.value
    seen = "\n".join([str(err), *getattr(err, "__notes__", [])])
    assert "could not release web01" in seen
    assert "the body failed" in seen
