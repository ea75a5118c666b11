"""libvirt: connection, guests, their disks, pause/resume and fs-freeze/thaw.

The only module that imports ``libvirt``.  Disk parsing is pure (XML in, values
out) so it is tested on real domain XML without a hypervisor.
"""

from __future__ import annotations

import os
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import libvirt

from vmsnap.errors import LibvirtError, NotFoundError, UsageError
from vmsnap.models import DiskSpec

STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}
RUNNING_STATES = ("running", "blocked")

# libvirt error codes meaning "there is no guest agent to talk to"
_NO_AGENT = frozenset(
    {
        libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
        libvirt.VIR_ERR_AGENT_UNSYNCED,
        libvirt.VIR_ERR_NO_SUPPORT,
        libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
        libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
        libvirt.VIR_ERR_OPERATION_INVALID,
    }
)


AGENT_CHANNEL = "org.qemu.guest_agent.0"


class AgentUnavailable(LibvirtError):
    """The guest agent is not configured, not connected or refused: the command
    did not take effect in the guest."""


class AgentTimeout(LibvirtError):
    """A connected guest agent did not answer in time: the command may still
    take effect in the guest later (a freeze, for one)."""


def _silence_default_handler() -> None:
    # libvirt prints every error to stderr by default; we report our own way.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _message(exc: libvirt.libvirtError) -> str:
    return str(exc.get_error_message() or exc).strip()


def default_uri() -> str | None:
    return os.environ.get("LIBVIRT_DEFAULT_URI") or None


@contextmanager
def connection(uri: str | None) -> Iterator[Connection]:
    _silence_default_handler()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        where = uri or "the default libvirt URI"
        raise LibvirtError(f"cannot connect to {where}: {_message(exc)}") from exc
    try:
        yield Connection(conn)
    finally:
        conn.close()


class Connection:
    def __init__(self, conn: libvirt.virConnect) -> None:
        self._conn = conn

    @property
    def uri(self) -> str:
        return str(self._conn.getURI())

    @property
    def is_local(self) -> bool:
        """LVM runs here, so the guests must be here too (no remote URIs)."""
        host = urlsplit(self.uri).hostname
        return host in (None, "", "localhost", "127.0.0.1", "::1", socket.gethostname())

    def require_local(self) -> None:
        if not self.is_local:
            raise UsageError(
                f"{self.uri} is a remote connection; run vmsnap on the host that holds the LVs"
            )

    @property
    def hostname(self) -> str:
        try:
            return str(self._conn.getHostname())
        except libvirt.libvirtError:
            return os.uname().nodename

    def domain(self, name: str) -> Domain:
        try:
            return Domain(self._conn.lookupByName(name))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise NotFoundError(f"no guest named {name!r} on {self.uri}") from exc
            raise LibvirtError(f"looking up guest {name!r}: {_message(exc)}") from exc

    def domain_by_uuid(self, uuid: str) -> Domain | None:
        try:
            return Domain(self._conn.lookupByUUIDString(uuid))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise LibvirtError(f"looking up guest {uuid}: {_message(exc)}") from exc

    def domains(self) -> list[Domain]:
        try:
            found = self._conn.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"listing guests: {_message(exc)}") from exc
        return sorted((Domain(d) for d in found), key=lambda d: d.name)

    def define(self, xml: str) -> Domain:
        try:
            return Domain(self._conn.defineXML(xml))
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"libvirt refused the new guest's XML: {_message(exc)}") from exc

    def undefine(self, dom: Domain) -> None:
        """Remove a guest this run defined (stopping it first if it runs)."""
        dom.remove()

    def pool_vg(self, pool: str) -> str | None:
        """The VG behind a libvirt storage pool of type 'logical', else None."""
        try:
            xml = self._conn.storagePoolLookupByName(pool).XMLDesc(0)
        except libvirt.libvirtError:
            return None
        return parse_logical_pool(xml)


class Domain:
    def __init__(self, dom: libvirt.virDomain) -> None:
        self._dom = dom

    @property
    def name(self) -> str:
        return str(self._dom.name())

    @property
    def uuid(self) -> str:
        return str(self._dom.UUIDString())

    def _call(self, what: str, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"{what} {self.name}: {_message(exc)}") from exc

    def state(self) -> str:
        state, _reason = self._call("reading the state of", self._dom.state)
        return STATE_NAMES.get(state, "unknown")

    def xml(self) -> str:
        return str(self._call("reading the XML of", self._dom.XMLDesc, 0))

    def definition(self) -> str:
        """The persistent definition, secrets included (what a restore needs);
        the live XML where that is not available."""
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        try:
            return str(self._dom.XMLDesc(flags))
        except libvirt.libvirtError:
            return self.xml()

    def hypervisor(self) -> str:
        root = ET.fromstring(self.xml())
        return root.get("type", "unknown")

    def remove(self) -> None:
        """Stop (if running) and undefine; best effort, for undoing our own define."""
        with suppress(libvirt.libvirtError):
            if self._dom.isActive():
                self._dom.destroy()
        with suppress(libvirt.libvirtError):
            self._dom.undefine()

    def start(self) -> None:
        self._call("starting", self._dom.create)

    def shutdown(self) -> None:
        """Ask the guest to shut down cleanly (ACPI or agent, as libvirt chooses)."""
        self._call("shutting down", self._dom.shutdown)

    def wait_shutoff(self, timeout: float, interval: float = 1.0) -> bool:
        """Wait until the guest is shut off; False at the timeout (never forced)."""
        deadline = time.monotonic() + timeout
        while self.state() != "shutoff":
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
        return True

    def suspend(self) -> None:
        self._call("pausing", self._dom.suspend)

    def resume(self) -> None:
        self._call("resuming", self._dom.resume)

    def freeze(self) -> int:
        """fs-freeze through the guest agent; the number of filesystems frozen."""
        try:
            return int(self._dom.fsFreeze(None, 0))
        except libvirt.libvirtError as exc:
            raise self._agent_error("freezing", exc) from exc

    def thaw(self) -> int:
        """fs-thaw through the guest agent; the number of filesystems thawed
        (0 when none was frozen)."""
        try:
            return int(self._dom.fsThaw(None, 0))
        except libvirt.libvirtError as exc:
            raise self._agent_error("thawing", exc) from exc

    def _agent_error(self, what: str, exc: libvirt.libvirtError) -> LibvirtError:
        code = exc.get_error_code()
        # libvirt says "not responding" both for an agent it never reached and
        # for one that took the command and then timed out: the channel's state
        # tells them apart (an agent that is not connected was never reached)
        if code == libvirt.VIR_ERR_AGENT_UNRESPONSIVE and self.agent_channel() not in (
            None,
            "disconnected",
        ):
            return AgentTimeout(f"guest agent of {self.name} did not answer: {_message(exc)}")
        if code in _NO_AGENT:
            return AgentUnavailable(f"guest agent of {self.name} unavailable: {_message(exc)}")
        return LibvirtError(f"{what} {self.name}: {_message(exc)}")

    def agent_channel(self) -> str | None:
        """The guest-agent channel's state in the live XML ("connected",
        "disconnected"; "" when libvirt does not say); None without a channel."""
        try:
            return parse_agent_channel(str(self._dom.XMLDesc(0)))
        except libvirt.libvirtError:
            return ""

    def set_agent_timeout(self, seconds: int) -> None:
        """Bound how long a guest-agent call may block; best effort."""
        with suppress(libvirt.libvirtError, AttributeError):
            self._dom.agentSetResponseTimeout(seconds, 0)


def parse_disks(xml: str) -> list[DiskSpec]:
    """The ``<disk>`` elements of a domain's XML."""
    root = ET.fromstring(xml)
    return [_parse_disk(d) for d in root.findall("./devices/disk")]


def _parse_disk(elem: ET.Element) -> DiskSpec:
    source_type = elem.get("type", "file")
    device = elem.get("device", "disk")
    target_el = elem.find("target")
    target = target_el.get("dev", "?") if target_el is not None else "?"
    readonly = elem.find("readonly") is not None
    src = elem.find("source")
    source, pool, volume = _source_of(source_type, src)
    return DiskSpec(
        target=target,
        device=device,
        source_type=source_type,
        source=source,
        readonly=readonly,
        pool=pool,
        volume_name=volume,
    )


def _source_of(
    source_type: str, src: ET.Element | None
) -> tuple[str | None, str | None, str | None]:
    if src is None:
        return None, None, None
    if source_type == "volume":
        pool, volume = src.get("pool"), src.get("volume")
        return f"{pool}/{volume}", pool, volume
    if source_type == "network":
        return src.get("name") or src.get("protocol"), None, None
    path = src.get("dev") or src.get("file") or src.get("dir")
    return path, None, None


def parse_agent_channel(xml: str) -> str | None:
    """The state of the guest-agent channel in a domain's XML; None without one."""
    root = ET.fromstring(xml)
    for target in root.findall("./devices/channel/target"):
        if target.get("name") == AGENT_CHANNEL:
            return target.get("state", "")
    return None


def parse_logical_pool(xml: str) -> str | None:
    root = ET.fromstring(xml)
    if root.get("type") != "logical":
        return None
    name = root.findtext("./source/name") or root.findtext("name")
    return name.strip() if name else None
