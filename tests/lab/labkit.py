"""Helpers for the lab tests: LVM commands, patterned data, test-driver XML."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vmsnap import cli
from vmsnap.progress import NoProgress
from vmsnap.repo import layout, refs
from vmsnap.repo.repository import init_local, open_local
from vmsnap.signals import GATE

REPO = Path(__file__).resolve().parents[2]
VMSNAP = [sys.executable, "-m", "vmsnap"]
VG = "labvg"
POOL = "pool"
MiB = 1 << 20


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C", LVM_SUPPRESS_FD_WARNINGS="1")
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"{argv} failed with {done.returncode}: {done.stderr.strip()}")
    return done


def lv_names(select: str = "") -> set[str]:
    argv = ["lvs", "--noheadings", "-o", "lv_name"]
    if select:
        argv.append(select)
    return {n.strip() for n in sh(*argv).stdout.split() if n.strip()}


def chunk_sha256_of(path: str | Path) -> str:
    """The manifest's digest of a device or file (see vmsnap.digest)."""
    lines = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            lines.update(hashlib.sha256(chunk).hexdigest().encode() + b"\n")
    return lines.hexdigest()


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def pattern(seed: str, size: int) -> bytes:
    """Deterministic, partly compressible data: text, zeros and hash noise."""
    out = bytearray()
    block = 0
    while len(out) < size:
        kind = block % 4
        if kind == 0:
            out += (f"{seed} block {block}\n" * 4096)[: 64 * 1024].encode()
        elif kind == 1:
            out += bytes(64 * 1024)
        else:
            h = hashlib.sha256(f"{seed}{block}".encode()).digest()
            out += h * (64 * 1024 // len(h))
        block += 1
    return bytes(out[:size])


def write_device(path: str, data: bytes, offset: int = 0) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Lab:
    vg: str
    pool: str

    def lv(self, name: str, size_mib: int, *, thin: bool = False, seed: str | None = None) -> str:
        """Create an LV filled with a pattern; return its /dev path."""
        if thin:
            sh("lvcreate", "-q", "-V", f"{size_mib}m", "-T", f"{self.vg}/{self.pool}", "-n", name)
        else:
            sh("lvcreate", "-q", "-y", "-L", f"{size_mib}m", "-n", name, self.vg)
        path = f"/dev/{self.vg}/{name}"
        write_device(path, pattern(seed or name, size_mib * MiB))
        return path

    def remove(self, name: str) -> None:
        sh("lvremove", "-f", f"{self.vg}/{name}", check=False)

    def free(self) -> int:
        out = sh("vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", "vg_free", self.vg)
        return int(out.stdout.strip())


DOMAIN = """  <domain type='{type}' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>{name}</name><memory>262144</memory><os><type>{os}</type></os>
    <devices>
{disks}
    </devices>{runstate}
  </domain>"""


def disk_xml(target: str, source: str, *, kind: str = "block", device: str = "disk") -> str:
    if kind == "volume":
        pool, vol = source.split("/")
        src = f"<source pool='{pool}' volume='{vol}'/>"
    elif kind == "file":
        src = f"<source file='{source}'/>"
    else:
        src = f"<source dev='{source}'/>"
    return f"      <disk type='{kind}' device='{device}'>{src}<target dev='{target}'/></disk>"


def domain_xml(
    name: str, disks: list[str], *, xen: bool = False, runstate: int | None = None
) -> str:
    state = f"\n    <test:runstate>{runstate}</test:runstate>" if runstate else ""
    return DOMAIN.format(
        type="xen" if xen else "kvm",
        name=name,
        os="xen" if xen else "hvm",
        disks="\n".join(disks),
        runstate=state,
    )


def node_uri(tmp_path: Path, domains: list[str], *, pool_vg: str | None = VG) -> str:
    pool = ""
    if pool_vg:
        pool = (
            f"  <pool type='logical'><name>lvpool</name><source><name>{pool_vg}</name>"
            f"<format type='lvm2'/></source><target><path>/dev/{pool_vg}</path></target></pool>"
        )
    node = tmp_path / "node.xml"
    node.write_text("<node>\n" + "\n".join(domains) + "\n" + pool + "\n</node>\n")
    return f"test://{node}"


def stopped(proc: subprocess.Popen[str], timeout: float = 300) -> None:
    """Wait until vmsnap stopped itself at its failpoint (state T)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] == "T":
                return
        time.sleep(0.2)
    raise AssertionError("vmsnap never reached its failpoint")


def start_vmsnap(point: str, *args: str) -> subprocess.Popen[str]:
    """vmsnap in the background, to stop itself at failpoint ``point``."""
    env = dict(os.environ, VMSNAP_FAILPOINT=point)
    return subprocess.Popen(
        [*VMSNAP, *args, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def journal_left() -> bool:
    """A run journal is on disk (a run is alive, or left work for cleanup)."""
    return (Path(os.environ["VMSNAP_STATE_DIR"]) / "journal.json").exists()


def fullest_snapshot() -> float:
    """The highest COW fill (percent) of the snapshots tagged vmsnap."""
    out = sh("lvs", "--noheadings", "-o", "snap_percent", "@vmsnap").stdout.split()
    return max((float(v) for v in out if v.strip()), default=0.0)


class SlowWriter(NoProgress):
    """A progress sink that rewrites 1 MiB of ``origin`` with each chunk read, so
    that a COW snapshot of it fills gradually and the overflow guard (polling
    every 0.2 s) has time to act: after each write it waits, up to a minute,
    while a snapshot is past the guard's threshold (lvs and lvextend are slow
    under emulation, slower on a loaded machine).  Without a guard the wait runs
    out and the next writes overflow the snapshot."""

    def __init__(self, origin: str) -> None:
        self.origin, self.done = origin, 0

    def advance(self, nbytes: int) -> None:
        write_device(self.origin, pattern(f"later{self.done}", MiB), self.done * 4 * MiB)
        self.done += 1
        time.sleep(1.0)
        deadline = time.monotonic() + 60
        while fullest_snapshot() >= 65.0 and time.monotonic() < deadline:
            time.sleep(0.5)


def vmsnap(
    *args: str, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``vmsnap ARGS`` in this process, as ``python -m vmsnap`` would.

    Starting Python and importing vmsnap costs about 11 s a process under the
    lab's emulation (most of a test's time when every call was a process), so
    the runs share this one; what a run sets process-wide (signal handlers,
    the excepthook, logging) is put back after it.  Tests that kill or stop a
    run use a process of its own (``start_vmsnap``, ``VMSNAP``)."""
    with _environment(env or {}), isolated_run(), _captured() as (out, err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # not expected: main returns the status
            code = exc.code if isinstance(exc.code, int) else 1
    done = subprocess.CompletedProcess([*VMSNAP, *args], code, out.text(), err.text())
    if check:
        done.check_returncode()
    return done


class _Sink(io.TextIOWrapper):
    """A text stream with a ``buffer`` (export -o - writes bytes there)."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", write_through=True)

    def text(self) -> str:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue().decode("utf-8", "replace")


@contextlib.contextmanager
def _captured() -> Iterator[tuple[_Sink, _Sink]]:
    out, err = _Sink(), _Sink()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _environment(overrides: dict[str, str]) -> Iterator[None]:
    """``env`` given in full (as subprocess takes it) or as a few overrides."""
    saved = dict(os.environ)
    os.environ.update(overrides)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def isolated_run() -> Iterator[None]:
    """What a run of vmsnap.cli.main sets process-wide is put back after it."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    hook = sys.excepthook
    logger = logging.getLogger("vmsnap")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        sys.excepthook = hook
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
        GATE.pending = None


QEMU_CONF = """user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
stdio_handler = "file"
"""

REAL_DOMAIN = """<domain type='qemu'>
  <name>{name}</name><memory unit='MiB'>48</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{disks}
    <video><model type='none'/></video><memballoon model='none'/>
  </devices>
</domain>"""


RealGuest = Callable[[str, dict[str, str]], str]
"""The ``real_guest`` fixture: define and start a qemu guest on LVs; its name."""


def real_disk_xml(target: str, path: str) -> str:
    return (
        "    <disk type='block' device='disk'><driver name='qemu' type='raw' cache='none'/>"
        f"<source dev='{path}'/><target dev='{target}' bus='virtio'/></disk>"
    )


def start_libvirtd(state: Path) -> str:
    """A real libvirtd in the lab VM (its /etc and libvirt folders are overlays):
    guests it runs outlive any vmsnap process.  Returns its URI."""
    # libvirtd looks the libvirt-qemu user up at start even when qemu runs as
    # root (qemu.conf below); /etc is a throwaway overlay in the lab VM
    if sh("getent", "passwd", "libvirt-qemu", check=False).returncode:
        with open("/etc/group", "a") as group:
            group.write("libvirt-qemu:x:64055:\n")
        with open("/etc/passwd", "a") as passwd:
            passwd.write("libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin\n")
    for folder in ("/var/run/libvirt", "/var/log/libvirt", "/var/lib/libvirt/qemu",
                   "/var/cache/libvirt"):  # fmt: skip
        os.makedirs(folder, exist_ok=True)
    Path("/etc/libvirt/qemu.conf").write_text(QEMU_CONF)
    subprocess.run(["libvirtd", "-d", "-p", str(state / "libvirtd.pid")], check=True)
    uri = "qemu:///system"
    answer = None
    for _ in range(60):
        answer = sh("virsh", "-c", uri, "version", check=False)
        if answer.returncode == 0:
            return uri
        time.sleep(0.5)
    log = Path("/var/log/libvirt/libvirtd.log")
    tail = log.read_text()[-2000:] if log.exists() else "no log"
    raise RuntimeError(f"libvirtd did not answer: {answer.stderr if answer else ''}\n{tail}")


def virsh(uri: str, *args: str, check: bool = True) -> str:
    return sh("virsh", "-c", uri, *args, check=check).stdout.strip()


# ---------------------------------------------------------------- repositories


def new_repo(tmp_path: Path, name: str = "dest") -> Path:
    """A new repository, as ``vmsnap init --dest`` makes it."""
    path = tmp_path / name
    init_local(path)
    return path


def backups_of(dest: Path, guest: str) -> list[Path]:
    """The folders of a guest's published backups, oldest first."""
    return [dest / r.prefix.rstrip("/") for r in refs.backups(open_local(dest), guest)]


def only_backup(dest: Path, guest: str) -> Path:
    found = backups_of(dest, guest)
    assert len(found) == 1, found
    return found[0]


def chunk_files(dest: Path, folder: Path, target: str) -> list[Path]:
    """The chunk files of a backed-up disk, in order (what the stock recipe cats)."""
    doc = json.loads((folder / layout.MANIFEST).read_text())
    disk = next(d for d in doc["disks"] if d["target"] == target)
    return [dest / layout.chunk_name(c) for c in disk["chunks"]]


def stock_bytes(dest: Path, folder: Path, target: str) -> bytes:
    """A backed-up disk as stock tools give it back: its chunk files,
    concatenated in order, through ``zstd -dc``."""
    files = chunk_files(dest, folder, target)
    with subprocess.Popen(["cat", *map(str, files)], stdout=subprocess.PIPE) as cat:
        out = subprocess.run(["zstd", "-dc"], stdin=cat.stdout, capture_output=True, check=True)
    assert cat.returncode == 0
    return out.stdout


def stock_sha(dest: Path, folder: Path, target: str) -> str:
    return hashlib.sha256(stock_bytes(dest, folder, target)).hexdigest()


def stored_objects(dest: Path) -> list[str]:
    """Every object of a repository but its config (temporaries too)."""
    return sorted(
        str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.name != "config"
    )


def chunk_count(dest: Path) -> int:
    return sum(1 for p in (dest / "chunks").rglob("*.zst") if not p.name.startswith("."))
