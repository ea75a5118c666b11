"""The README's three jobs, as written there, through the CLI on real LVM:
nightly backups with a configuration file and --prune, a guest cloned from a
template, and a pre-upgrade checkpoint (each call is a new process, so a new
libvirt test driver: the guests start out running each time)."""

from __future__ import annotations

import json
from pathlib import Path

from labkit import Lab, MiB, disk_xml, domain_xml, node_uri, pattern, sha256_of, write_device
from labkit import vmsnap as run_vmsnap

STABLE_UUID = "<uuid>1f0e2d3c-4b5a-4697-8877-665544332211</uuid>"


def guest(tmp_path: Path, name: str, disks: dict[str, str]) -> str:
    """A node with one guest (with a fixed UUID) on the given LVs; its URI."""
    xml = domain_xml(name, [disk_xml(t, p) for t, p in disks.items()])
    return node_uri(
        tmp_path, [xml.replace(f"<name>{name}</name>", f"<name>{name}</name>{STABLE_UUID}")]
    )


def test_nightly_backups_with_the_configuration_file(lab: Lab, tmp_path: Path) -> None:
    uri = guest(tmp_path, "nightly", {"vda": lab.lv("nightly-root", 8)})
    dest = tmp_path / "backup"
    conf = tmp_path / "vmsnap.toml"
    conf.write_text(
        f'connect = "{uri}"\ndest = "{dest}"\n\n'
        "[retention]\nkeep_daily = 7\nkeep_weekly = 4\nkeep_monthly = 6\n"
    )
    env = {"VMSNAP_CONFIG": str(conf), "VMSNAP_HOOKS_DIR": str(tmp_path / "no-hooks")}
    made = run_vmsnap("init", env=env)  # once: the repository, at the file's dest
    assert made.returncode == 0, made.stderr
    for _night in range(2):  # two runs on one day: the day keeps the newest
        run = run_vmsnap("backup", "--all", "--prune", env=env)
        assert run.returncode == 0, run.stderr
    listed = run_vmsnap("backups", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (doc,) = json.loads(listed.stdout)
    assert doc["guest"] == "nightly"
    assert len(doc["backups"]) == 1
    assert doc["backups"][0]["size"] == 8 * MiB
    assert doc["backups"][0]["verified"] is None
    assert run_vmsnap("verify", str(dest), env=env).returncode == 0
    again = json.loads(run_vmsnap("backups", "--json", env=env).stdout)
    assert again[0]["backups"][0]["verified"]["status"] == "OK"


def test_a_new_guest_from_a_template(lab: Lab, tmp_path: Path) -> None:
    root = lab.lv("rtpl-root", 8)
    uri = guest(tmp_path, "tpl-debian12", {"vda": root})
    run = run_vmsnap("clone", "tpl-debian12", "web02", "--start", "-c", uri)
    assert run.returncode == 0, run.stderr
    assert "web02: started" in run.stdout
    assert sha256_of(f"/dev/{lab.vg}/web02-vda") == sha256_of(root)


def test_a_checkpoint_before_an_upgrade(lab: Lab, tmp_path: Path) -> None:
    disk = lab.lv("rup-root", 8)
    before = sha256_of(disk)
    uri = guest(tmp_path, "web01", {"vda": disk})
    env = {"VMSNAP_HOOKS_DIR": str(tmp_path / "no-hooks")}
    made = run_vmsnap("checkpoint", "create", "web01", "--label", "pre-upgrade",
                      "--snapshot-size", "50%", "--expire", "3d", "-c", uri, env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    write_device(disk, pattern("the upgrade", 2 * MiB))  # the upgrade
    rolled = run_vmsnap(
        "checkpoint", "rollback", "web01", "--shutdown", "--start", "-c", uri, env=env
    )
    assert rolled.returncode == 0, rolled.stderr
    assert sha256_of(disk) == before
    again = run_vmsnap(
        "checkpoint", "create", "web01", "--label", "pre-upgrade", "-c", uri, env=env
    )
    assert again.returncode == 0, again.stderr
    released = run_vmsnap("checkpoint", "release", "web01", "pre-upgrade", "-c", uri, env=env)
    assert released.returncode == 0, released.stderr
