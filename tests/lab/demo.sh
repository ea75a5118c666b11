#!/usr/bin/env bash
# `make demo`, inside the lab VM: a VG on a loop file, two demo guests described
# to libvirt (its test driver), then `vmsnap list`, a repository and two nights
# of `vmsnap backup --all` with writes between, restore, clone and checkpoint.
# The repository lands in build/lab/repo on the host.
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

step "vmsnap init: a chunk repository (format 3), made once"
export VMSNAP_CACHE_DIR=/tmp/vmsnap-cache  # the chunk index (the host's / is read-only)
repo_dir="$out/repo"
run vmsnap init --dest "$repo_dir"

step "Night 1: vmsnap backup --all (every chunk is new)"
run vmsnap backup --all --dest "$repo_dir" --progress

step "During the day: db01 writes 6 MiB, web01's data disk 1 MiB"
dd if=/dev/urandom of=/dev/demovg/db01-disk bs=1M count=6 seek=20 conv=notrunc,fsync status=none
dd if=/dev/urandom of=/dev/demovg/web01-data bs=1M count=1 seek=3 conv=notrunc,fsync status=none

step "Night 2: vmsnap backup --all (only the changed chunks are stored)"
run vmsnap backup --all --dest "$repo_dir" --progress

step "vmsnap backups: both nights of each guest, what each stored new"
run vmsnap backups --dest "$repo_dir"

step "What was written (chunks are shared by both nights)"
run du -sh "$repo_dir/chunks"
printf '%s chunk files\n' "$(find "$repo_dir/chunks" -type f | wc -l)"
manifest=$(ls -d "$repo_dir"/backups/web01/*/ | tail -n 1)manifest.json
run jq '{format_version, domain, quiesce, disks: [.disks[] | {target, volume, size, new_bytes, stored_bytes, chunks: (.chunks | length)}]}' "$manifest"

step "Check: stock tools (jq, cat, zstd -dc) give back the exact bytes of each volume"
for pair in web01/xvda:web01-root web01/xvdb:web01-data db01/vda:db01-disk; do
  m=$(ls -d "$repo_dir"/backups/"${pair%%/*}"/*/ | tail -n 1)manifest.json
  a=$(cd "$repo_dir" && jq -r --arg t "$(basename "${pair%%:*}")" \
        '.disks[] | select(.target == $t) | .chunks[] | "chunks/\(.[0:2])/\(.).zst"' "$m" |
      xargs -r cat | zstd -dc | sha256sum | cut -c1-16)
  b=$(sha256sum < /dev/demovg/"${pair#*:}" | cut -c1-16)
  printf '%-28s stored %s  volume %s  %s\n' "${pair%%:*}" "$a" "$b" "$([ "$a" = "$b" ] && echo OK || echo MISMATCH)"
  [ "$a" = "$b" ]
done

step "vmsnap verify --read-data: every chunk of every backup decoded and checked"
run vmsnap verify --dest "$repo_dir" --read-data

step "vmsnap restore: web01's data disk as of night 1 onto a new thin LV (sparse), checked while written"
first=$(ls -d "$repo_dir"/backups/web01/*/ | head -n 1)
run vmsnap restore --dest "$repo_dir" web01 --at "$(basename "$first")" --disk xvdb \
  --vg demovg --thin-pool pool --name web01-data-restored
run lvs -o lv_name,lv_size,data_percent demovg/web01-data-restored

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
echo; echo "demo: the repository is build/lab/repo (vmsnap backups --dest build/lab/repo)"
