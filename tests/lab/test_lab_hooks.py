"""Hooks around a real backup and a checkpoint on real LVM: phases in order with
the documented environment, and a pre-quiesce veto that leaves nothing behind.
(Ordering, timeout and the security refusal are tested on the host:
tests/unit/test_hooks.py.)"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import (
    VG,
    Lab,
    backups_of,
    disk_xml,
    domain_xml,
    lv_names,
    new_repo,
    node_uri,
    only_backup,
)

from vmsnap import backup, checkpoint, clone, hooks, restore, virt
from vmsnap.backupname import BackupName
from vmsnap.errors import ExitCode, HookError
from vmsnap.hooks import Hooks
from vmsnap.models import QuiesceMode
from vmsnap.progress import NoProgress

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from backupkit import disk_data, make_backup

RECORD = """#!/bin/sh
set -eu
{{ echo "$0|$1|$VMSNAP_PHASE|$VMSNAP_COMMAND|${{VMSNAP_DOMAIN-}}|${{VMSNAP_BACKUP_DIR-}}|\
${{VMSNAP_QUIESCE-}}|${{VMSNAP_VOLUMES-}}|${{VMSNAP_SNAPSHOTS-}}|${{VMSNAP_STATUS-}}|\
${{VMSNAP_ERROR-}}|${{VMSNAP_LABEL-}}|${{VMSNAP_DEST-}}"; }} >> {log}
"""
VETO = """#!/bin/sh
set -eu
if [ "$VMSNAP_PHASE" = pre-quiesce ] && [ "${VMSNAP_DOMAIN}" = upgrading ]; then
  echo "upgrading is mid-upgrade: no backup" >&2
  exit 1
fi
"""


@pytest.fixture
def hook_dir() -> Iterator[Path]:
    """Root's folder that no one else can write, all the way up (not /tmp)."""
    for parent in ("/run", "/etc"):
        try:
            folder = Path(tempfile.mkdtemp(prefix="vmsnap-hooks-", dir=parent))
        except OSError:
            continue
        folder.chmod(0o755)
        try:
            hooks.check_safe(folder)
        except HookError:
            shutil.rmtree(folder)
            continue
        yield folder
        shutil.rmtree(folder)
        return
    pytest.fail("no root-only folder for hooks in the lab")


def records(log: Path) -> list[list[str]]:
    return [line.split("|") for line in log.read_text().splitlines()]


def test_backup_hooks_in_order_and_a_veto_leaves_nothing(
    lab: Lab, tmp_path: Path, hook_dir: Path
) -> None:
    log = tmp_path / "hooks.log"
    for name, text in (("10-record", RECORD.format(log=log)), ("20-veto", VETO)):
        (hook_dir / name).write_text(text)
        (hook_dir / name).chmod(0o755)
    ok_disk = lab.lv("hk-ok", 8)
    vetoed_disk = lab.lv("hk-up", 8, thin=True)
    uri = node_uri(
        tmp_path,
        [
            domain_xml("good", [disk_xml("vda", ok_disk)]),
            domain_xml("upgrading", [disk_xml("vda", vetoed_disk)]),
        ],
    )
    dest = new_repo(tmp_path)
    settings = backup.BackupSettings(
        dest=dest, quiesce=QuiesceMode.PAUSE, hooks=Hooks(hook_dir, timeout=30)
    )
    with virt.connection(uri) as conn:
        results = backup.backup(conn, None, settings, NoProgress())
    good, upgrading = results
    assert good.ok, good.error
    assert isinstance(upgrading.error, HookError)
    assert upgrading.error.exit_code == ExitCode.HOOK
    assert "20-veto at pre-quiesce exited with status 1" in str(upgrading.error)
    assert backups_of(dest, "upgrading") == []
    assert not lv_names("@vmsnap")

    seen = records(log)
    assert all(r[0] == str(hook_dir / "10-record") and r[1] == r[2] for r in seen)
    assert [(r[2], r[4]) for r in seen] == [
        ("job-start", ""),
        ("pre-quiesce", "good"),
        ("post-snapshot", "good"),
        ("backup-end", "good"),
        ("pre-quiesce", "upgrading"),  # 10-record ran, then 20-veto said no
        ("backup-abort", "upgrading"),
        ("job-end", ""),
    ]
    by_phase = {(r[2], r[4]): r for r in seen}
    assert all(r[3] == "backup" and r[12] == str(dest) for r in seen)
    pre = by_phase["pre-quiesce", "good"]
    assert good.backup is not None
    assert pre[5] == good.backup.label  # where it will be published
    assert (pre[6], pre[7]) == ("pause", ok_disk)
    post = by_phase["post-snapshot", "good"]
    assert post[6] == "pause"  # the mode used; the guest is already resumed
    assert post[8].startswith("/dev/labvg/hk-ok-vmsnap-")
    assert by_phase["backup-end", "good"][5] == str(only_backup(dest, "good"))
    assert "mid-upgrade" not in by_phase["backup-abort", "upgrading"][10]
    assert "20-veto" in by_phase["backup-abort", "upgrading"][10]
    assert by_phase["job-end", ""][9] == "failed"


def test_checkpoint_hooks_and_a_vetoed_checkpoint(lab: Lab, tmp_path: Path, hook_dir: Path) -> None:
    log = tmp_path / "hooks.log"
    for name, text in (("10-record", RECORD.format(log=log)), ("20-veto", VETO)):
        (hook_dir / name).write_text(text)
        (hook_dir / name).chmod(0o755)
    disk = lab.lv("hk-cp", 8)
    vetoed = lab.lv("hk-cp-up", 8)
    uri = node_uri(
        tmp_path,
        [
            domain_xml("cp", [disk_xml("vda", disk)]),
            domain_xml("upgrading", [disk_xml("vda", vetoed)]),
        ],
    )
    with_hooks = Hooks(hook_dir, timeout=30)
    with virt.connection(uri) as conn:
        made = checkpoint.create(
            conn,
            "cp",
            checkpoint.CreateSettings(label="pre", quiesce=QuiesceMode.PAUSE, hooks=with_hooks),
        )
        with pytest.raises(HookError):
            checkpoint.create(
                conn,
                "upgrading",
                checkpoint.CreateSettings(label="x", quiesce=QuiesceMode.PAUSE, hooks=with_hooks),
            )
        checkpoint.rollback(conn, "cp", "pre", shutdown=True, hooks=with_hooks)
    assert not lv_names("@vmsnap") | lv_names("@vmsnap_checkpoint")
    seen = records(log)
    assert [(r[2], r[4]) for r in seen] == [
        ("pre-quiesce", "cp"),
        ("post-snapshot", "cp"),
        ("checkpoint-end", "cp"),
        ("pre-quiesce", "upgrading"),
        ("checkpoint-abort", "upgrading"),
        ("pre-rollback", "cp"),
        ("post-rollback", "cp"),
    ]
    assert all(r[3] == "checkpoint" for r in seen)
    assert seen[2][8] == made.disks[0].snapshot.path
    assert seen[0][11] == seen[5][11] == "pre"


JOB_VETO = """#!/bin/sh
set -eu
if [ "$VMSNAP_PHASE" = job-start ] && [ "$VMSNAP_DOMAIN" = vetoed ]; then exit 3; fi
"""


def test_restore_and_clone_hooks_and_a_vetoed_clone(
    lab: Lab, tmp_path: Path, hook_dir: Path
) -> None:
    log = tmp_path / "hooks.log"
    for name, text in (("10-record", RECORD.format(log=log)), ("20-veto", JOB_VETO)):
        (hook_dir / name).write_text(text)
        (hook_dir / name).chmod(0o755)
    xml = domain_xml("web01", [disk_xml("vda", "/dev/vg0/x")]).encode()
    folder = make_backup(tmp_path / "dest", "web01", disks={"vda": disk_data(3)}, xml=xml)
    source = BackupName(str(folder))
    with_hooks = Hooks(hook_dir, timeout=30)
    done = restore.restore(
        restore.RestoreSettings(backup=source, vg=VG, name="hk-back", hooks=with_hooks),
        NoProgress(),
    )
    uri = node_uri(tmp_path, [])
    with virt.connection(uri) as conn:
        made = clone.clone(
            conn,
            clone.CloneSettings(source, "hk-copy", vg=VG, define=False, hooks=with_hooks),
            NoProgress(),
        )
        with pytest.raises(HookError, match="20-veto at job-start exited with status 3"):
            clone.clone(
                conn,
                clone.CloneSettings(source, "vetoed", vg=VG, define=False, hooks=with_hooks),
                NoProgress(),
            )
    assert not any(n.startswith("vetoed") for n in lv_names())
    seen = [(r[2], r[3], r[4], r[7], r[9]) for r in records(log)]
    back, copy = done.disks[0].path, made.disks[0].path
    assert seen == [
        ("job-start", "restore", "web01", "", ""),
        ("restore-end", "restore", "web01", back, ""),
        ("job-end", "restore", "web01", "", "ok"),
        ("job-start", "clone", "hk-copy", "", ""),
        ("clone-end", "clone", "hk-copy", copy, ""),
        ("job-end", "clone", "hk-copy", "", "ok"),
        ("job-start", "clone", "vetoed", "", ""),  # 10-record ran, then 20-veto said no
    ]
    assert all(r[5] == str(folder) for r in records(log)[:3])  # VMSNAP_BACKUP_DIR
