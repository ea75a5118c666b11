"""The chunk repository (format 3) on real LVM, through the CLI: incremental
nights, restore of each night, a clone deduplicated against its template,
prune and garbage collection, kill -9 during a backup and during a collection,
and the stock-tools recipe of vmsnap-format(5) on a real backup."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from labkit import (
    REPO,
    VG,
    VMSNAP,
    Lab,
    MiB,
    backups_of,
    chunk_count,
    disk_xml,
    domain_xml,
    lv_names,
    new_repo,
    node_uri,
    pattern,
    sha256_of,
    start_vmsnap,
    stock_sha,
    stopped,
    stored_objects,
    vmsnap,
    write_device,
)

CHUNK = 4 * MiB


def night(dest: Path, uri: str, guest: str) -> dict[str, int]:
    """One ``vmsnap backup``: its counts (read, new, deduplicated bytes; chunks)."""
    run = vmsnap("backup", guest, "--dest", str(dest), "--connect", uri, "--json",
                 "--quiesce", "pause")  # fmt: skip
    assert run.returncode == 0, run.stderr
    (doc,) = json.loads(run.stdout)
    counts: dict[str, int] = doc["counts"]
    return counts


def fill(path: str, seed: str, chunks: int) -> None:
    """Distinct data in every chunk (no chunk equals another)."""
    for n in range(chunks):
        write_device(path, pattern(f"{seed}{n}", CHUNK), n * CHUNK)


def change(path: str, chunk: int, seed: str) -> None:
    """1 MiB of new bytes inside chunk ``chunk``."""
    write_device(path, pattern(seed, MiB), chunk * CHUNK + MiB)


def test_two_nights_store_only_the_changed_chunks_and_each_restores(
    lab: Lab, tmp_path: Path
) -> None:
    disk = lab.lv("inc-root", 32)
    fill(disk, "inc", 8)
    uri = node_uri(tmp_path, [domain_xml("inc", [disk_xml("vda", disk)])])
    dest = new_repo(tmp_path)
    first = night(dest, uri, "inc")
    assert (first["read_bytes"], first["new_chunks"]) == (32 * MiB, 8)
    sums = [sha256_of(disk)]
    change(disk, 2, "night two a")
    change(disk, 5, "night two b")
    second = night(dest, uri, "inc")
    sums.append(sha256_of(disk))
    assert second["read_bytes"] == 32 * MiB  # every byte read and hashed
    assert (second["new_chunks"], second["new_bytes"]) == (2, 2 * CHUNK)  # only these stored
    assert second["deduplicated_bytes"] == 6 * CHUNK
    assert chunk_count(dest) == 10
    one, two = backups_of(dest, "inc")
    assert [stock_sha(dest, f, "vda") for f in (one, two)] == sums
    target = lab.lv("inc-target", 32)
    for folder, want in ((one, sums[0]), (two, sums[1])):  # restore of each night
        run = vmsnap("restore", "--dest", str(dest), "inc", "--at", folder.name,
                     "--to", target, "--force")  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert sha256_of(target) == want
    run = vmsnap("restore", str(one), "--to", target, "--force")  # by its folder
    assert run.returncode == 0, run.stderr
    assert sha256_of(target) == sums[0]


def test_a_clone_of_a_template_is_stored_against_the_template(lab: Lab, tmp_path: Path) -> None:
    template = lab.lv("tpl-root", 32)
    fill(template, "tpl", 8)
    uri = node_uri(tmp_path, [domain_xml("tpl", [disk_xml("vda", template)])])
    dest = new_repo(tmp_path)
    assert night(dest, uri, "tpl")["new_chunks"] == 8
    run = vmsnap("clone", "tpl", "web02", "--connect", uri, "--quiesce", "pause")
    assert run.returncode == 0, run.stderr
    clone_lv = f"/dev/{VG}/web02-vda"
    assert sha256_of(clone_lv) == sha256_of(template)
    change(clone_lv, 0, "first boot of web02")  # the clone's own hostname, keys...
    (tmp_path / "clone").mkdir()
    clone_uri = node_uri(tmp_path / "clone", [domain_xml("web02", [disk_xml("vda", clone_lv)])])
    counts = night(dest, clone_uri, "web02")
    assert (counts["new_chunks"], counts["deduplicated_bytes"]) == (1, 7 * CHUNK)
    assert stock_sha(dest, backups_of(dest, "web02")[0], "vda") == sha256_of(clone_lv)


def test_prune_frees_only_the_chunks_of_the_dropped_backup(lab: Lab, tmp_path: Path) -> None:
    disk = lab.lv("prn-root", 16)
    fill(disk, "prn", 4)
    uri = node_uri(tmp_path, [domain_xml("prn", [disk_xml("vda", disk)])])
    dest = new_repo(tmp_path)
    night(dest, uri, "prn")
    change(disk, 1, "next night")
    night(dest, uri, "prn")
    kept = sha256_of(disk)
    assert chunk_count(dest) == 5
    run = vmsnap("prune", "--dest", str(dest), "--keep-last", "1")
    assert run.returncode == 0, run.stderr
    assert chunk_count(dest) == 4  # the old chunk 1 was the first night's alone
    (left,) = backups_of(dest, "prn")
    assert stock_sha(dest, left, "vda") == kept
    run = vmsnap("verify", "--dest", str(dest), "--read-data")
    assert run.returncode == 0, run.stderr + run.stdout


def test_kill_9_during_a_backup_and_during_a_collection_loses_nothing(
    lab: Lab, tmp_path: Path
) -> None:
    disk = lab.lv("k9r-root", 32)
    fill(disk, "k9r", 8)
    uri = node_uri(tmp_path, [domain_xml("k9r", [disk_xml("vda", disk)])])
    dest = new_repo(tmp_path)
    night(dest, uri, "k9r")
    for n in range(4):
        change(disk, n, f"k9r changed {n}")
    proc = start_vmsnap("streaming", "backup", "k9r", "--dest", str(dest), "--connect", uri,
                        "--quiesce", "pause")  # fmt: skip
    stopped(proc)
    proc.kill()
    proc.communicate()
    assert vmsnap("cleanup", "--connect", uri).returncode == 0  # its snapshot
    assert not lv_names("@vmsnap")
    assert len(backups_of(dest, "k9r")) == 1  # nothing published by the killed run
    verified = vmsnap("verify", "--dest", str(dest), "--read-data")
    assert verified.returncode == 0, verified.stderr + verified.stdout

    night(dest, uri, "k9r")
    newest = sha256_of(disk)
    proc = subprocess.Popen(
        [*VMSNAP, "prune", "--dest", str(dest), "--keep-last", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, VMSNAP_FAILPOINT="collecting"),
    )  # fmt: skip
    stopped(proc)
    proc.kill()
    proc.communicate()
    (left,) = backups_of(dest, "k9r")  # the manifest went before any chunk
    verified = vmsnap("verify", "--dest", str(dest), "--read-data")
    assert verified.returncode == 0, verified.stderr + verified.stdout
    assert stock_sha(dest, left, "vda") == newest
    assert [o for o in stored_objects(dest) if "/." in o] == []  # nothing half-written visible
    run = vmsnap("prune", "--dest", str(dest), "--keep-last", "1")  # finishes the collection
    assert run.returncode == 0, run.stderr
    assert chunk_count(dest) == 8


def man_recipe() -> str:
    """The stock-tools recipe of vmsnap-format(5), as shell text."""
    page = (REPO / "man" / "vmsnap-format.5").read_text()
    section = page[page.index(".SH RESTORING WITH STOCK TOOLS") :]
    block = section[section.index(".EX\n") + 4 : section.index(".EE\n")]
    return block.replace(r"\-", "-").replace(r"\(aq", "'").replace(r"\e", "\\")


def test_the_stock_recipe_of_the_man_page_on_a_real_backup(lab: Lab, tmp_path: Path) -> None:
    disk = lab.lv("web01-root", 16)
    fill(disk, "recipe", 3)
    uri = node_uri(tmp_path, [domain_xml("web01", [disk_xml("vda", disk)])])
    dest = new_repo(tmp_path)
    night(dest, uri, "web01")
    (folder,) = backups_of(dest, "web01")
    recipe = man_recipe().replace("/srv/repo", str(dest)).replace("20261202T011000Z", folder.name)
    subprocess.run(["bash", "-euo", "pipefail", "-c", recipe], check=True, timeout=120)
    assert sha256_of(dest / "vda.raw") == sha256_of(disk)
