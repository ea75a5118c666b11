"""The agent guest's boot files, built at test time from installed Debian packages.

A kernel from ``linux-image-amd64`` and an initramfs holding busybox (from
``busybox-static``), qemu-ga (from ``qemu-guest-agent``) with the shared
libraries ``ldd`` names, and the virtio, virtio_blk, virtio_console and ext4
modules with what ``modules.dep`` says they need.  Its init mounts the ext4
data disk (vda) on /mnt/data and runs qemu-ga with a fsfreeze hook that logs
every call to /run/hook.log and, when /run/hang exists, sleeps that many
seconds before a freeze (a hung agent); /run/hang-thaw does the same after the
next thaw, once (the filesystems are thawed, but the agent answers late; qemu-ga
runs the hook at every thaw, a retried one included).  Nothing here is committed: the
image goes to build/agent/, keyed on its inputs, so a second run reuses it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

AGENT_PORT = "org.qemu.guest_agent.0"
QEMU_GA = "/usr/sbin/qemu-ga"
BUSYBOX = "/bin/busybox"
# load order matters: each after what it needs (crc32c: ext4's softdep)
MODULES = (
    "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
    "virtio_blk", "virtio_console", "crc32c_generic", "ext4",
)  # fmt: skip

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
: > /run/hook.log
for m in {modules}; do insmod /modules/$m.ko || echo "init: insmod $m failed"; done
mkdir -p /mnt/data /dev/virtio-ports
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
mount -t ext4 /dev/vda /mnt/data || echo "init: mounting /dev/vda failed"
for p in /sys/class/virtio-ports/*; do
  [ "$(cat $p/name 2>/dev/null)" = {port} ] && ln -sf /dev/${{p##*/}} /dev/virtio-ports/{port}
done
echo "init: starting qemu-ga"
while true; do
  qemu-ga -m virtio-serial -p /dev/virtio-ports/{port} -F/fsfreeze-hook -t /run -f /run/qemu-ga.pid
  echo "init: qemu-ga exited with $?"
  sleep 1
done
"""

HOOK = """#!/bin/sh
# qemu-ga's fsfreeze hook: $1 is "freeze" (before freezing) or "thaw" (after)
echo "$1" >> /run/hook.log
if [ "$1" = freeze ] && [ -f /run/hang ]; then
  sleep "$(cat /run/hang)"
fi
if [ "$1" = thaw ] && [ -f /run/hang-thaw ]; then
  late=$(cat /run/hang-thaw); rm -f /run/hang-thaw   # once: qemu-ga runs this at every thaw
  sleep "$late"
fi
exit 0
"""


@dataclass(frozen=True)
class BootFiles:
    kernel: Path
    initramfs: Path


def newest_kernel() -> tuple[Path, str]:
    kernels = sorted(Path("/boot").glob("vmlinuz-*-amd64"), key=_version_key)
    if not kernels:
        raise RuntimeError("no /boot/vmlinuz-*-amd64 kernel (run make setup)")
    kernel = kernels[-1]
    return kernel, kernel.name.removeprefix("vmlinuz-")


def _version_key(path: Path) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", path.name)]


def module_files(release: str) -> list[Path]:
    """The module files to load, in order, each after the ones it depends on."""
    root = Path("/lib/modules") / release
    deps: dict[str, list[str]] = {}
    for line in (root / "modules.dep").read_text().splitlines():
        path, _, needs = line.partition(":")
        deps[_module_name(path)] = [path, *needs.split()]
    ordered: list[str] = []
    for name in MODULES:
        if name not in deps:
            raise RuntimeError(f"module {name} is not in {root}/modules.dep (built in?)")
        chain = deps[name]
        for path in [*reversed(chain[1:]), chain[0]]:
            if path not in ordered:
                ordered.append(path)
    files = [root / p for p in ordered]
    packed = [f for f in files if f.suffix != ".ko"]
    if packed:
        raise RuntimeError(f"compressed modules are not handled: {packed[0]}")
    return files


def _module_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def shared_libraries(binary: str) -> list[Path]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = [Path(m) for m in re.findall(r"(/\S+) \(0x", out)]
    return [lib for lib in libs if lib.exists()]


def build(out: Path) -> BootFiles:
    """The kernel and an initramfs for it in ``out``, rebuilt only when an input changed."""
    kernel, release = newest_kernel()
    modules = module_files(release)
    libs = shared_libraries(QEMU_GA)
    inputs = [kernel, Path(QEMU_GA), Path(BUSYBOX), *modules, *libs]
    key = _key(inputs, [INIT, HOOK, release])
    initramfs = out / f"initramfs-{key}.cpio.gz"
    if not initramfs.exists():
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("initramfs-*.cpio.gz"):
            old.unlink()
        _pack(out / "root", modules, libs, initramfs)
    return BootFiles(kernel=kernel, initramfs=initramfs)


def _key(files: list[Path], texts: list[str]) -> str:
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    for text in texts:
        digest.update(text.encode())
    return digest.hexdigest()[:16]


def _pack(root: Path, modules: list[Path], libs: list[Path], target: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for folder in ("bin", "proc", "sys", "dev", "run", "mnt", "modules", "tmp"):
        (root / folder).mkdir(parents=True)
    _copy(Path(BUSYBOX), root / "bin/busybox")
    _copy(Path(QEMU_GA), root / "bin/qemu-ga")
    for lib in libs:
        _copy(lib, root / str(lib).lstrip("/"))
    for mod in modules:
        _copy(mod, root / "modules" / f"{_module_name(mod.name)}.ko")
    names = " ".join(_module_name(m.name) for m in modules)
    _script(root / "init", INIT.format(modules=names, port=AGENT_PORT))
    _script(root / "fsfreeze-hook", HOOK)
    listing = "\n".join(sorted(str(p.relative_to(root)) for p in root.rglob("*"))) + "\n"
    temp = target.with_suffix(".tmp")
    with temp.open("wb") as sink:
        cpio = subprocess.Popen(
            ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        gz = subprocess.Popen(["gzip", "-1", "-n"], stdin=cpio.stdout, stdout=sink)
        assert cpio.stdin is not None
        assert cpio.stdout is not None
        cpio.stdout.close()
        cpio.stdin.write(listing.encode())
        cpio.stdin.close()
        if cpio.wait() != 0 or gz.wait() != 0:
            raise RuntimeError("packing the initramfs failed")
    os.replace(temp, target)
    shutil.rmtree(root)


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src.resolve(), dest)
    shutil.copymode(src.resolve(), dest)


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)
