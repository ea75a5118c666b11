#!/usr/bin/env bash
# Runs inside the lab VM: load device-mapper, then the lab tests.
out=$1
cd "$(dirname "$0")/../.."
modprobe -a dm-snapshot dm-thin-pool dm-mod loop 2>&1
export LVM_SUPPRESS_FD_WARNINGS=1 PYTHONDONTWRITEBYTECODE=1 VMSNAP_LAB=1 TMPDIR=/tmp
export VMSNAP_STATE_DIR=/tmp/vmsnap-state  # the host's / is read-only in the lab
eval "set -- $(cat "$out/pytest-args")"
where=tests/lab  # unless the arguments name test files or folders themselves
for arg in "$@"; do case $arg in tests/*) where= ;; esac; done
.venv/bin/python -m pytest -p no:cacheprovider -m lab $where \
  --junitxml="$out/junit.xml" -o junit_family=xunit2 "$@"
echo $? > "$out/rc"
