"""Helpers for the agent tier: libvirtd, the guests' XML, and talking to the
guest agent directly (to watch what vmsnap does from outside)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

REPO = Path(__file__).resolve().parents[2]
VMSNAP = str(Path(sys.executable).parent / "vmsnap")
URI = "qemu:///system"
BOOT_TIMEOUT = 150  # seconds for the agent guest to answer a guest-ping under TCG

AGENT_GUEST = """<domain type='qemu'>
  <name>{name}</name><memory unit='MiB'>192</memory><vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel><initrd>{initramfs}</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=4</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices>
</domain>"""

# no OS at all (the BIOS runs and waits): enough for pause and resume; with or
# without an agent channel, but never an agent behind it
BARE_GUEST = """<domain type='qemu'>
  <name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>{channel}
    <video><model type='none'/></video><memballoon model='none'/>
  </devices>
</domain>"""
CHANNEL = """
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, env=dict(os.environ, LC_ALL="C")
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{argv} failed with {done.returncode}: {done.stderr.strip()}")
    return done


def start_libvirtd(state: Path) -> int:
    """libvirtd for this tier (tests/agent/run gave it private folders); its pid."""
    pidfile = state / "libvirtd.pid"
    subprocess.run(["libvirtd", "-d", "-p", str(pidfile)], check=True)
    answer = None
    for _ in range(60):
        answer = sh("virsh", "-c", URI, "version", check=False)
        if answer.returncode == 0:
            return int(pidfile.read_text())
        time.sleep(0.5)
    log = Path("/var/log/libvirt/libvirtd.log")
    tail = log.read_text()[-2000:] if log.exists() else "no log"
    raise RuntimeError(f"libvirtd did not answer: {answer.stderr if answer else ''}\n{tail}")


def make_data_disk(path: Path) -> None:
    """A small ext4 filesystem for the guest to mount and freeze."""
    sh("truncate", "-s", "16M", str(path))
    sh("mkfs.ext4", "-q", "-F", "-L", "data", str(path))


def agent(dom: libvirt.virDomain, command: str, timeout: int = 10, **arguments: Any) -> Any:
    """Send one command to the guest agent, past vmsnap; its "return" member."""
    message: dict[str, Any] = {"execute": command}
    if arguments:
        message["arguments"] = arguments
    reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps(message), timeout, 0)
    return json.loads(reply)["return"]


def freeze_status(dom: libvirt.virDomain) -> str:
    return str(agent(dom, "guest-fsfreeze-status"))


def wait_for_agent(dom: libvirt.virDomain, console: Path) -> float:
    """Seconds until the agent answered a ping; fails with the console's tail."""
    start = time.monotonic()
    while time.monotonic() - start < BOOT_TIMEOUT:
        try:
            agent(dom, "guest-ping", timeout=2)
            return time.monotonic() - start
        except libvirt.libvirtError:
            time.sleep(1)
    tail = console.read_text(errors="replace")[-3000:] if console.exists() else "no console"
    raise RuntimeError(f"the guest agent did not answer within {BOOT_TIMEOUT} s:\n{tail}")


def write_guest_file(dom: libvirt.virDomain, path: str, text: str) -> None:
    handle = agent(dom, "guest-file-open", path=path, mode="w")
    try:
        data = base64.b64encode(text.encode()).decode()
        agent(dom, "guest-file-write", handle=handle, **{"buf-b64": data})
    finally:
        agent(dom, "guest-file-close", handle=handle)


def read_guest_file(dom: libvirt.virDomain, path: str) -> str:
    handle = agent(dom, "guest-file-open", path=path, mode="r")
    try:
        got = agent(dom, "guest-file-read", handle=handle, count=65536)
        return base64.b64decode(got["buf-b64"]).decode()
    finally:
        agent(dom, "guest-file-close", handle=handle)


def remove_guest_file(dom: libvirt.virDomain, path: str) -> None:
    """Through guest-exec of busybox rm (the agent has no unlink command)."""
    started = agent(dom, "guest-exec", path="/bin/rm", arg=["-f", path])
    for _ in range(50):
        if agent(dom, "guest-exec-status", pid=started["pid"])["exited"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"rm -f {path} in the guest did not finish")
