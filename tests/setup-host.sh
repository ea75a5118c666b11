#!/usr/bin/env bash
# Everything vmsnap's demo and tests need on a fresh Debian 12 machine, as root:
# Debian packages (LVM, libvirt, qemu, a -amd64 kernel for the lab), and the
# virtual environment .venv at the repository root with vmsnap installed.
# Idempotent: a second run installs nothing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
packages=(
  lvm2 thin-provisioning-tools e2fsprogs zstd            # the real tools vmsnap drives
  libvirt-dev libvirt-clients pkg-config gcc python3-dev  # libvirt-python builds from source
  libvirt-daemon libvirt-daemon-driver-qemu qemu-guest-agent
  qemu-system-x86 linux-image-amd64 busybox-static       # the lab: a real kernel under TCG
  cpio                                                    # the agent tier packs its guest's initramfs
  mandoc libxml2-utils                                    # man page lint; virt-xml-validate
  jq                                                      # the repository's stock-tools recipe
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
python=${PYTHON:-python3}
if [ ! -x "$repo/.venv/bin/python" ]; then
  "$python" -m venv "$repo/.venv"
fi
stamp="$repo/.venv/.vmsnap-installed"
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
  "$repo/.venv/bin/pip" install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  "$repo/.venv/bin/pip" install -q -e "$repo[dev]" 2>&1 | grep -v '^WARNING: Location' || true
  "$repo/.venv/bin/python" -c "import vmsnap, libvirt, zstandard, typer, tqdm, boto3" 
  touch "$stamp"
fi
