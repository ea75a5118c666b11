#!/usr/bin/env bash
# Runs inside the lab VM: load device-mapper, then the lab tests.
out=$1
cd "$(dirname "$0")/../.."
modprobe -a dm-snapshot dm-thin-pool dm-mod loop 2>&1
export LVM_SUPPRESS_FD_WARNINGS=1 PYTHONDONTWRITEBYTECODE=1 VMSNAP_LAB=1 TMPDIR=/tmp
eval "set -- $(cat "$out/pytest-args")"
.venv/bin/python -m pytest -p no:cacheprovider -m lab tests/lab \
  --junitxml="$out/junit.xml" -o junit_family=xunit2 "$@"
echo $? > "$out/rc"
