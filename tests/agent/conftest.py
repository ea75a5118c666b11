"""Agent-tier fixtures: one real libvirtd and one TCG guest running qemu-ga,
booted once per session and shared by the tests.

These tests run only under tests/agent/run (make test-agent), which gives them
a private mount namespace; selected anywhere else they fail loudly rather than
skip, so a tier that did not run cannot pass.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import guestimage
import libvirt
import pytest
from agentkit import (
    AGENT_GUEST,
    BARE_GUEST,
    CHANNEL,
    REPO,
    URI,
    freeze_status,
    make_data_disk,
    remove_guest_file,
    start_libvirtd,
    wait_for_agent,
)


@dataclass
class Guest:
    dom: libvirt.virDomain
    console: Path

    @property
    def name(self) -> str:
        return str(self.dom.name())


@pytest.fixture(scope="session")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[libvirt.virConnect]:
    """A connection to this tier's own libvirtd, stopped (by its pid) at the end."""
    if os.environ.get("VMSNAP_AGENT_TIER") != "1":
        pytest.fail("agent tests run in their own namespace: use tests/agent/run (make test)")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    pid = start_libvirtd(Path(os.environ["VMSNAP_AGENT_STATE"]))
    connection = libvirt.open(URI)
    try:
        yield connection
    finally:
        for dom in connection.listAllDomains(0):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        connection.close()
        os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="session")
def agent_guest(conn: libvirt.virConnect, tmp_path_factory: pytest.TempPathFactory) -> Guest:
    """The guest with a real qemu-ga and an ext4 disk mounted on /mnt/data."""
    boot = guestimage.build(REPO / "build" / "agent")
    folder = tmp_path_factory.mktemp("agent-guest")
    disk, console = folder / "data.img", folder / "console.log"
    make_data_disk(disk)
    xml = AGENT_GUEST.format(
        name="agent-guest",
        kernel=boot.kernel,
        initramfs=boot.initramfs.resolve(),
        disk=disk,
        console=console,
    )
    dom = conn.defineXML(xml)
    dom.create()
    seconds = wait_for_agent(dom, console)
    print(f"\nagent: the guest agent answered {seconds:.0f} s after start")
    return Guest(dom=dom, console=console)


@pytest.fixture
def guest(agent_guest: Guest) -> Iterator[Guest]:
    """The agent guest, checked after each test: running, thawed, no hang armed."""
    yield agent_guest
    dom = agent_guest.dom
    remove_guest_file(dom, "/run/hang")
    remove_guest_file(dom, "/run/hang-thaw")
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert freeze_status(dom) == "thawed"


def _bare(conn: libvirt.virConnect, name: str, channel: str) -> Iterator[str]:
    dom = conn.defineXML(BARE_GUEST.format(name=name, channel=channel))
    dom.create()
    time.sleep(0.5)
    try:
        yield name
    finally:
        dom.destroy()
        dom.undefine()


@pytest.fixture
def no_channel_guest(conn: libvirt.virConnect) -> Iterator[str]:
    """A running guest without a guest-agent channel."""
    yield from _bare(conn, "no-channel", "")


@pytest.fixture
def silent_channel_guest(conn: libvirt.virConnect) -> Iterator[str]:
    """A running guest with an agent channel but no agent behind it."""
    yield from _bare(conn, "silent-channel", CHANNEL)
