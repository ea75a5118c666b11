#!/usr/bin/env bash
# `make demo`, inside the lab VM: a VG on a loop file, two demo guests described
# to libvirt (its test driver), then `vmsnap list` and `vmsnap backup --all`.
# The backups land in build/lab/backups on the host.
set -euo pipefail
out=$1
repo=$(cd "$(dirname "$0")/../.." && pwd)
trap 'echo $? > "$out/rc"' EXIT
export LVM_SUPPRESS_FD_WARNINGS=1 PATH="$repo/.venv/bin:$PATH"
export VMSNAP_STATE_DIR=/tmp/vmsnap-state  # the host's / is read-only in the lab
modprobe -a dm-snapshot dm-thin-pool dm-mod loop
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "A volume group on a loop file, with a thin pool"
truncate -s 1G /tmp/demo-pv.img
loop=$(losetup -f --show /tmp/demo-pv.img)
pvcreate -q "$loop"; vgcreate -q demovg "$loop"
lvcreate -q -T -L 300m demovg/pool

step "Xen domU web01: two thick LVs, the root one a real ext4 filesystem with files"
lvcreate -q -L 96m -n web01-root demovg
lvcreate -q -L 32m -n web01-data demovg
mkdir -p /tmp/rootfs/etc /tmp/rootfs/var/www
cp -r /etc/apt /tmp/rootfs/etc/ 2>/dev/null || true
echo "<h1>hello from web01</h1>" > /tmp/rootfs/var/www/index.html
cp /bin/bash /usr/bin/python3* /tmp/rootfs/ 2>/dev/null || true
mkfs.ext4 -q -F -L web01-root -d /tmp/rootfs /dev/demovg/web01-root
head -c 12M /dev/urandom > /dev/demovg/web01-data

step "KVM guest db01 on a thin LV"
lvcreate -q -V 128m -T demovg/pool -n db01-disk
(yes "INSERT INTO t VALUES (42, 'demo');" || true) | head -c 40M > /dev/demovg/db01-disk
run lvs demovg

cat > /tmp/demo-node.xml <<XML
<node>
  <domain type='xen'>
    <name>web01</name><uuid>0d6b2d5e-3c39-4d4b-9a52-8f7f6a1c0a01</uuid><memory>524288</memory><os><type>xen</type></os>
    <devices>
      <disk type='block' device='disk'><source dev='/dev/demovg/web01-root'/><target dev='xvda' bus='xen'/></disk>
      <disk type='block' device='disk'><source dev='/dev/mapper/demovg-web01--data'/><target dev='xvdb' bus='xen'/></disk>
      <disk type='file' device='cdrom'><source file='/srv/iso/debian-12.iso'/><target dev='xvdc'/><readonly/></disk>
      <interface type='bridge'><mac address='00:16:3e:5a:01:01'/><source bridge='xenbr0'/></interface>
    </devices>
  </domain>
  <domain type='kvm'>
    <name>db01</name><uuid>0d6b2d5e-3c39-4d4b-9a52-8f7f6a1c0a02</uuid><memory>1048576</memory><os><type>hvm</type></os>
    <devices>
      <disk type='block' device='disk'><source dev='/dev/demovg/db01-disk'/><target dev='vda' bus='virtio'/></disk>
    </devices>
  </domain>
</node>
XML
export LIBVIRT_DEFAULT_URI=test:///tmp/demo-node.xml

step "vmsnap list"
run vmsnap list

step "vmsnap backup --all"
mkdir -p "$out/backups"
run vmsnap backup --all --dest "$out/backups" --progress

step "What was written"
run find "$out/backups" -type f -printf '%M %10s  %P\n'
manifest=$(ls -d "$out"/backups/web01/*/ | head -n 1)manifest.json
run cat "$manifest"

step "Check: plain zstd -dc gives back the exact bytes of each volume"
for pair in web01/xvda:web01-root web01/xvdb:web01-data db01/vda:db01-disk; do
  img=$(ls "$out"/backups/"${pair%%/*}"/*/"$(basename "${pair%%:*}")".img.zst)
  a=$(zstd -dc "$img" | sha256sum | cut -c1-16)
  b=$(sha256sum < /dev/demovg/"${pair#*:}" | cut -c1-16)
  printf '%-28s image %s  volume %s  %s\n' "${pair%%:*}" "$a" "$b" "$([ "$a" = "$b" ] && echo OK || echo MISMATCH)"
  [ "$a" = "$b" ]
done

step "vmsnap verify: decode every image, check it against the sealed manifest"
run vmsnap verify "$out/backups"

step "vmsnap restore: web01's data disk onto a new thin LV (sparse), checked while written"
web01=$(ls -d "$out"/backups/web01/*/ | head -n 1)
run vmsnap restore "$web01" --disk xvdb --vg demovg --thin-pool pool --name web01-data-restored
run lvs -o lv_name,lv_size,data_percent demovg/web01-data-restored

step "The chunk repository (foundation): two nights of the restored data disk, a write between"
# vmsnap backup still writes the folders above; image store is the repository's first writer.
run vmsnap init --dest "$out/repo"
run vmsnap image store /dev/demovg/web01-data-restored --dest "$out/repo" --name web01-data
dd if=/dev/urandom of=/dev/demovg/web01-data-restored bs=1M count=4 seek=8 conv=notrunc,fsync status=none
run vmsnap image store /dev/demovg/web01-data-restored --dest "$out/repo" --name web01-data
run vmsnap export --dest "$out/repo" web01-data -o "$out/web01-data.img.zst"
a=$(zstd -dc "$out/web01-data.img.zst" | sha256sum | cut -c1-16)
b=$(sha256sum < /dev/demovg/web01-data-restored | cut -c1-16)
printf 'second night: exported %s  volume %s  %s\n' "$a" "$b" "$([ "$a" = "$b" ] && echo OK || echo MISMATCH)"
[ "$a" = "$b" ]

step "vmsnap clone: web02 from the live web01 template (new LVs, name, UUID, MACs)"
cd "$out"
run vmsnap clone web01 web02 --no-define --xml "$out/web02.xml"
run lvs -o lv_name,lv_size,origin demovg

step "vmsnap checkpoint: keep web01's snapshots across an upgrade, then roll it back"
run vmsnap checkpoint create web01 --label pre-upgrade --snapshot-size 100% --expire 1d
before=$(sha256sum < /dev/demovg/web01-data | cut -c1-16)
echo "(the 'upgrade': 8 MiB of new bytes on web01-data)"
head -c 8M /dev/urandom | dd of=/dev/demovg/web01-data bs=1M conv=notrunc,fsync status=none
run vmsnap checkpoint list web01
run vmsnap checkpoint rollback web01 --shutdown
after=$(sha256sum < /dev/demovg/web01-data | cut -c1-16)
printf 'web01-data at checkpoint %s, after rollback %s  %s\n' "$before" "$after" \
  "$([ "$before" = "$after" ] && echo OK || echo MISMATCH)"
[ "$before" = "$after" ]

step "vmsnap checkpoint release: db01's upgrade went well"
run vmsnap checkpoint create db01 --label pre-upgrade
run vmsnap checkpoint release db01 pre-upgrade
[ -z "$(lvs --noheadings @vmsnap_checkpoint)" ] && echo "no checkpoint left"

step "No snapshot left behind"
run lvs -o lv_name,lv_tags demovg
[ -z "$(lvs --noheadings @vmsnap)" ] && echo "none tagged @vmsnap"
vgremove -q -f demovg >/dev/null; losetup -d "$loop"
echo; echo "demo: backups are in build/lab/backups"
