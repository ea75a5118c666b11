"""vmsnap prune, vmsnap backups, vmsnap verify and its record, the configuration
file and --log-file, on real format-3 repositories built by backupkit (no LVM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from clikit import VMSNAP, Main, one_line_error

from vmsnap import backup
from vmsnap.errors import ExitCode
from vmsnap.hooks import NO_HOOKS
from vmsnap.models import SizeSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
from labkit import stopped

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from backupkit import chunk_path, make_backup, random_bytes

STAMPS = ["20261101T020000Z", "20261102T020000Z", "20261102T140000Z", "20261103T020000Z"]


def created(stamp: str) -> str:
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"


def backups(dest: Path, guest: str = "web01", stamps: list[str] = STAMPS) -> list[Path]:
    """One backup a stamp (created then), each with a chunk of its own."""
    return [
        make_backup(dest, guest, stamp, disks={"vda": random_bytes(5000, n)})
        for n, stamp in enumerate(stamps)
    ]


def present(dest: Path, guest: str = "web01") -> list[str]:
    """The published backups of ``guest``: those with a manifest."""
    folder = dest / "backups" / guest
    return sorted(p.name for p in folder.iterdir() if (p / "manifest.json").exists())


def flip_chunk(dest: Path, backup: Path) -> Path:
    path = chunk_path(dest, backup)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    return path


@pytest.fixture
def conf(tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vmsnap.toml"
    path.write_text(f'dest = "{dest}"\n[retention]\nkeep_daily = 2\n')
    monkeypatch.setenv("VMSNAP_CONFIG", str(path))
    return path


# ---------------------------------------------------------------- prune


def test_prune_keep_last(main: Main, dest: Path) -> None:
    backups(dest)
    code, out, err = main("prune", "--dest", str(dest), "--keep-last", "2")
    assert code == 0
    assert "error" not in err
    assert present(dest) == STAMPS[2:]
    assert f"web01: removed {STAMPS[0]}" in out
    assert f"web01: keep    {STAMPS[3]}  (last)" in out
    assert "garbage collection: freed 2 of 4 chunk(s)" in out


def test_prune_dry_run_json(main: Main, dest: Path) -> None:
    backups(dest)
    backups(dest, "db01", STAMPS[:1])  # the same chunk as web01's first
    code, out, _err = main("prune", "--dest", str(dest), "--keep-daily", "1", "--dry-run", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["dry_run"] is True
    assert doc["policy"] == {"keep_last": 0, "keep_daily": 1, "keep_weekly": 0, "keep_monthly": 0}
    web = next(g for g in doc["guests"] if g["guest"] == "web01")
    assert [k["stamp"] for k in web["keep"]] == [STAMPS[3]]
    assert web["keep"][0]["reasons"] == ["daily 2026-11-03"]
    assert sorted(r["stamp"] for r in web["remove"]) == STAMPS[:3]
    assert set(web["keep"][0]) >= {"backup", "created", "size", "unique_bytes", "verified"}
    db = next(g for g in doc["guests"] if g["guest"] == "db01")
    assert ([k["stamp"] for k in db["keep"]], db["remove"]) == ([STAMPS[0]], [])
    gc = doc["gc"]
    assert (gc["dry_run"], gc["manifests"], gc["chunks"]) == (True, 2, 4)
    assert gc["garbage"] == 2  # web01's first chunk is db01's too
    assert gc["garbage_bytes"] == sum(r["unique_bytes"] for r in web["remove"][1:])
    assert len(present(dest)) == 4  # nothing removed
    assert len(list((dest / "chunks").rglob("*.zst"))) == 4


def test_prune_named_guest_only(main: Main, dest: Path) -> None:
    backups(dest)
    backups(dest, "db01")
    code, _out, _err = main("prune", "--dest", str(dest), "--keep-last", "1", "db01")
    assert code == 0
    assert (present(dest, "db01"), present(dest)) == ([STAMPS[-1]], STAMPS)


def test_prune_without_a_policy_is_a_usage_error(main: Main, dest: Path) -> None:
    backups(dest)
    code, _out, err = main("prune", "--dest", str(dest))
    assert code == ExitCode.USAGE
    assert "no retention policy" in one_line_error(err)
    code, _out, err = main("prune", "--dest", str(dest), "--keep-last", "0")
    assert code == ExitCode.USAGE
    assert present(dest) == STAMPS


def test_prune_unknown_guest_is_not_found(main: Main, dest: Path) -> None:
    backups(dest, stamps=STAMPS[:1])
    code, _out, err = main("prune", "--dest", str(dest), "--keep-last", "1", "web99")
    assert code == ExitCode.NOT_FOUND
    assert "no backups of web99" in one_line_error(err)


@pytest.mark.parametrize(
    "command", [["prune", "--keep-last", "1"], ["backups"], ["verify", "--dest"]]
)
def test_a_missing_or_plain_folder_is_not_a_repository(
    main: Main, tmp_path: Path, command: list[str]
) -> None:
    """A missing folder is 9 and a folder that is not a repository 15, as for
    every command that reads a repository."""
    args = command if command[-1] == "--dest" else [*command, "--dest"]
    code, _out, err = main(*args, str(tmp_path / "nope"))
    assert code == ExitCode.DESTINATION == 9
    assert one_line_error(err) == (
        f"vmsnap: error: repository {tmp_path / 'nope'} does not exist "
        f"(create one with: vmsnap init --dest {tmp_path / 'nope'})"
    )
    code, _out, err = main(*args, str(tmp_path))
    assert code == ExitCode.NOT_A_REPOSITORY
    assert "is not a vmsnap repository (it has no config)" in one_line_error(err)


def test_prune_waits_for_the_run_lock(
    main: Main, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmsnap import lock  # noqa: PLC0415 - only this test shortens the wait

    backups(dest)
    monkeypatch.setattr(lock, "DEFAULT_WAIT", 0.3)
    with lock.run_lock(wait=0.3):  # a backup is running: it may name chunks gc would see unused
        code, _out, err = main("prune", "--dest", str(dest), "--keep-last", "1")
    assert code == ExitCode.LOCKED
    waiting, error = err.splitlines()  # the wait says who holds the lock, then the error
    assert f"held by pid {os.getpid()}" in waiting
    assert f"another vmsnap run (pid {os.getpid()}) holds" in one_line_error(error)
    assert present(dest) == STAMPS


def test_prune_cannot_remove_is_destination_error(main: Main, dest: Path) -> None:
    folders = backups(dest)
    folders[0].chmod(0o500)
    try:
        code, _out, err = main("prune", "--dest", str(dest), "--keep-last", "1")
    finally:
        folders[0].chmod(0o700)
    if code == 0:
        pytest.skip("root may write anywhere")
    assert code == ExitCode.DESTINATION
    assert "cannot remove" in err


def test_prune_uses_the_configured_policy_and_dest(main: Main, dest: Path, conf: Path) -> None:
    backups(dest)
    code, _out, _err = main("prune")
    assert code == 0
    assert present(dest) == STAMPS[2:]
    code, _out, _err = main("prune", "--keep-last", "1")  # replaces [retention] as a whole
    assert present(dest) == STAMPS[3:]


# ---------------------------------------------------------------- backups


def test_backups_lists_newest_first_with_verify_state(main: Main, dest: Path) -> None:
    folders = backups(dest, stamps=STAMPS[:2])
    code, out, _err = main("backups", "--dest", str(dest), "--json")
    assert code == 0
    [guest] = json.loads(out)
    assert guest["guest"] == "web01"
    assert [b["stamp"] for b in guest["backups"]] == [STAMPS[1], STAMPS[0]]
    first = guest["backups"][0]
    assert first["created"] == created(STAMPS[1])
    assert (first["size"], first["disks"], first["verified"]) == (5000, ["vda"], None)
    assert (first["new_bytes"], first["stored_bytes"]) == (5000, chunk_size(dest, folders[1]))
    assert first["unique_bytes"] == first["stored_bytes"]
    assert first["age_seconds"] > 0
    assert guest["newest_good"] == STAMPS[1]

    flip_chunk(dest, folders[0])
    code, _out, _err = main("verify", str(dest / "backups" / "web01"))
    assert code == ExitCode.INTEGRITY
    code, out, _err = main("backups", "--dest", str(dest), "--json", "web01")
    states = [b["verified"]["status"] for b in json.loads(out)[0]["backups"]]
    assert states == ["OK", "CORRUPT"]
    assert [b["good"] for b in json.loads(out)[0]["backups"]] == [True, False]
    code, out, _err = main("backups", "--dest", str(dest))
    assert code == 0
    assert "OK 20" in out
    assert "CORRUPT 20" in out


def chunk_size(dest: Path, folder: Path) -> int:
    return chunk_path(dest, folder).stat().st_size


def test_a_failed_verify_keeps_a_backup_out_of_retention(main: Main, dest: Path) -> None:
    folders = backups(dest)
    flip_chunk(dest, folders[3])
    main("verify", str(folders[3]))
    code, _out, _err = main("prune", "--dest", str(dest), "--keep-last", "1")
    assert code == 0
    assert present(dest) == STAMPS[2:]  # the newest good one, and the corrupt one left alone


def test_backups_needs_a_dest(main: Main) -> None:
    code, _out, err = main("backups")
    assert code == ExitCode.USAGE
    assert "--dest REPO is required" in one_line_error(err)


# ---------------------------------------------------------------- config file


def test_a_bad_config_file_is_one_usage_error(main: Main, dest: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('dest = "/x"\nlevle = 3\n')
    code, _out, err = main("--config", str(bad), "backups")
    assert code == ExitCode.USAGE
    assert one_line_error(err) == (
        f"vmsnap: error: {bad}:2: levle: unknown key (known: connect, dest, guests, hooks_dir, "
        "level, quiesce, retention, s3, snapshot_size, thin_pool_limit)"
    )
    code, _out, _err = main("--config", str(bad), "backups", "--help")
    assert code == 0  # help never reads the file


def test_a_missing_config_file_is_not_found(main: Main, tmp_path: Path) -> None:
    code, _out, err = main("--config", str(tmp_path / "nope.toml"), "backups")
    assert code == ExitCode.NOT_FOUND
    assert "nope.toml does not exist" in one_line_error(err)


def test_cli_wins_over_the_config_file(main: Main, dest: Path, conf: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    backups(other, stamps=STAMPS[:1])
    code, out, _err = main("backups", "--json", "--dest", str(other))
    assert code == 0
    assert [g["location"] for g in json.loads(out)] == [str(other / "backups" / "web01")]


def test_backup_with_prune_needs_a_policy(main: Main, dest: Path, uri: str) -> None:
    code, _out, err = main("backup", "--all", "--dest", str(dest), "--connect", uri, "--prune")
    assert code == ExitCode.USAGE
    assert "no retention policy" in one_line_error(err)


def test_backup_takes_dest_and_connect_from_the_config(
    main: Main, dest: Path, tmp_path: Path, uri: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'connect = "{uri}"\ndest = "{tmp_path / "missing"}"\n')
    code, _out, err = main("--config", str(path), "backup", "--all")
    assert code == ExitCode.DESTINATION  # reached the destination check: dest and connect came
    assert "missing does not exist" in err


# ---------------------------------------------------------------- --log-file


def test_log_file_gets_timestamped_lines_even_with_quiet(main: Main, tmp_path: Path) -> None:
    log = tmp_path / "vmsnap.log"
    log.write_text("old line\n")
    code, _out, err = main("-q", "--log-file", str(log), "prune", "--dest", str(tmp_path / "x"))
    assert code == ExitCode.USAGE
    lines = log.read_text().splitlines()
    assert lines[0] == "old line"  # appended
    started = f" vmsnap INFO: started: vmsnap -q --log-file {log} prune --dest {tmp_path / 'x'}"
    assert any(line.endswith(started) for line in lines)
    assert any(" vmsnap ERROR: no retention policy" in line for line in lines)
    assert lines[-1].endswith(" vmsnap INFO: exit status 2")
    assert all(line[:4].isdigit() for line in lines[1:])
    assert err.count("no retention policy") == 1


def test_log_file_that_cannot_be_opened_is_a_usage_error(main: Main, tmp_path: Path) -> None:
    code, _out, err = main("--log-file", str(tmp_path / "no" / "x.log"), "backups")
    assert code == ExitCode.USAGE
    assert "cannot open --log-file" in one_line_error(err)


def test_json_is_one_document_on_stdout_and_logs_go_to_stderr(main: Main, dest: Path) -> None:
    backups(dest)
    code, out, err = main("-v", "prune", "--dest", str(dest), "--keep-last", "1", "--json")
    assert code == 0
    doc = json.loads(out)  # nothing else on stdout
    assert len(doc["guests"][0]["remove"]) == 3
    assert err.count(" vmsnap INFO: removed ") == 3  # timestamped: stderr is not a terminal


# ---------------------------------------------------------------- precedence


def captured_settings(
    main: Main, monkeypatch: pytest.MonkeyPatch, *args: str
) -> backup.BackupSettings:
    """The settings the CLI hands to the backup core (which is not run)."""
    seen: list[backup.BackupSettings] = []

    def fake(_conn: object, _names: object, settings: backup.BackupSettings, _p: object) -> list:
        seen.append(settings)
        return []

    monkeypatch.setattr(backup, "backup", fake)
    code, _out, err = main("backup", *args)
    assert code == 0, err
    return seen[0]


def test_precedence_option_then_file_then_default(
    main: Main, monkeypatch: pytest.MonkeyPatch, dest: Path, tmp_path: Path, uri: str
) -> None:
    built_in = captured_settings(main, monkeypatch, "--all", "--dest", str(dest), "-c", uri)
    assert (built_in.quiesce, built_in.level, built_in.snapshot_size) == ("auto", 3, None)
    assert (built_in.thin_pool_limit, built_in.excludes) == (90.0, frozenset())
    conf = tmp_path / "vmsnap.toml"
    conf.write_text(
        f'connect = "{uri}"\ndest = "{dest}"\nquiesce = "pause"\nlevel = 9\n'
        'snapshot_size = "2G"\nthin_pool_limit = 80\nhooks_dir = "/srv/hooks"\n'
        '[guests.web01]\nexclude = ["xvdb"]\n[guests.elsewhere]\nexclude = ["vda"]\n'
    )
    monkeypatch.setenv("VMSNAP_CONFIG", str(conf))
    monkeypatch.delenv("VMSNAP_HOOKS_DIR", raising=False)
    from_file = captured_settings(main, monkeypatch, "--all")
    assert (from_file.dest, from_file.quiesce, from_file.level) == (dest, "pause", 9)
    assert (from_file.snapshot_size, from_file.thin_pool_limit) == (SizeSpec.parse("2G"), 80)
    assert from_file.excludes == {("web01", "xvdb")}  # guests not backed up are left out
    assert from_file.hooks.directory == Path("/srv/hooks")
    options = captured_settings(
        main, monkeypatch, "web01", "--quiesce", "none", "--level", "1", "--snapshot-size",
        "5%", "--thin-pool-limit", "50", "--exclude", "web01:xvdc", "--dest", str(tmp_path),
    )  # fmt: skip
    assert (options.dest, options.quiesce, options.level) == (tmp_path, "none", 1)
    assert (options.snapshot_size, options.thin_pool_limit) == (SizeSpec.parse("5%"), 50)
    assert options.excludes == {("web01", "xvdb"), ("web01", "xvdc")}  # both: they add up
    monkeypatch.setenv("VMSNAP_HOOKS_DIR", "/env/hooks")
    assert captured_settings(main, monkeypatch, "--all").hooks.directory == Path("/env/hooks")


def test_libvirt_default_uri_wins_over_the_files_connect(
    main: Main, monkeypatch: pytest.MonkeyPatch, dest: Path, tmp_path: Path, uri: str
) -> None:
    conf = tmp_path / "vmsnap.toml"
    conf.write_text(f'connect = "{uri}"\ndest = "{dest}"\n')
    monkeypatch.setenv("VMSNAP_CONFIG", str(conf))
    assert main("list", "web01")[0] == 0  # the file's node has web01
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")  # libvirt's own: no web01
    code, _out, err = main("list", "web01")
    assert code == ExitCode.NOT_FOUND
    assert "web01" in one_line_error(err)


def test_backups_and_prune_never_follow_a_link_inside_the_repository(
    main: Main, dest: Path, tmp_path: Path
) -> None:
    """A guest folder that is a link is not listed, pruned or collected."""
    backups(dest, stamps=STAMPS[:1])
    outside = backups(tmp_path / "outside", "db01", STAMPS[:2])
    (dest / "backups" / "db01").symlink_to(outside[0].parent)
    for args in (["backups"], ["prune", "--keep-last", "1"]):
        code, out, _err = main(*args, "--dest", str(dest))
        assert code == ExitCode.OK
        assert "db01" not in out
    assert present(tmp_path / "outside", "db01") == STAMPS[:2]
    code, _out, err = main("backups", "--dest", str(dest), "db01")
    assert code == ExitCode.NOT_FOUND
    assert "no backups of db01" in one_line_error(err)


def test_the_environment_is_read_by_the_cli_not_by_the_settings(
    main: Main, monkeypatch: pytest.MonkeyPatch, dest: Path, uri: str
) -> None:
    """The VMSNAP_* tunables reach the core through the settings the CLI builds;
    a settings class reads nothing behind a default."""
    monkeypatch.setenv("VMSNAP_GUARD_INTERVAL", "0.5")
    monkeypatch.setenv("VMSNAP_HOOK_TIMEOUT", "12")
    settings = captured_settings(main, monkeypatch, "--all", "--dest", str(dest), "-c", uri)
    assert (settings.guard.interval, settings.hooks.timeout) == (0.5, 12.0)
    bare = backup.BackupSettings(dest=dest, hooks=NO_HOOKS)
    assert (bare.guard.interval, bare.hooks.directory) == (1.0, None)
    monkeypatch.setenv("VMSNAP_GUARD_INTERVAL", "0")
    code, _out, err = main("backup", "--all", "--dest", str(dest), "-c", uri)
    assert code == ExitCode.USAGE
    assert "VMSNAP_GUARD_INTERVAL='0' must be at least 0.1" in one_line_error(err)


# ---------------------------------------------------------------- verify


def test_verify_takes_dest_and_guests_or_paths(main: Main, dest: Path) -> None:
    web = backups(dest, stamps=STAMPS[:2])
    backups(dest, "db01", STAMPS[:1])
    code, out, err = main("verify", "--no-progress", "--dest", str(dest), "web01")
    assert (code, err) == (0, "")
    assert f"{web[0]}: OK  vda" in out
    assert "db01" not in out
    assert "2 backup(s) verified: 2 OK, 0 failed; 2 chunk(s) present, 2 decoded (a sample)" in out
    code, out, _err = main("verify", "--json", "--sample", "0", str(web[1]), str(dest))
    doc = json.loads(out)
    assert code == 0
    db = dest / "backups" / "db01" / STAMPS[0]
    assert [b["backup"] for b in doc["backups"]] == [str(web[1]), str(db), str(web[0])]
    assert (doc["chunks"], doc["decoded"], doc["read_data"]) == (2, 0, False)  # db01's is web01's
    code, out, _err = main("verify", "--json", "--read-data", str(dest))
    assert json.loads(out)["decoded"] == 2


def test_verify_uses_the_configured_dest(main: Main, dest: Path, conf: Path) -> None:
    backups(dest, stamps=STAMPS[:1])
    code, out, _err = main("verify")
    assert code == 0
    assert "1 backup(s) verified: 1 OK" in out


def test_verify_a_corrupt_chunk_names_every_backup_using_it(main: Main, dest: Path) -> None:
    same = {"vda": random_bytes(5000, 9)}
    first = make_backup(dest, "web01", STAMPS[0], disks=same)
    second = make_backup(dest, "db01", STAMPS[1], disks=same)  # the same bytes, one chunk
    victim = flip_chunk(dest, first)
    code, out, err = main("verify", "--dest", str(dest))
    assert code == ExitCode.INTEGRITY == 10
    [line] = [x for x in err.splitlines() if "used by" in x]
    assert victim.name.removesuffix(".zst") in line
    assert "is corrupt" in line
    assert str(first) in line
    assert str(second) in line
    assert f"{first}: CORRUPT" in out
    assert f"{second}: CORRUPT" in out


def test_verify_a_missing_chunk_is_17_and_a_corrupt_one_wins(main: Main, dest: Path) -> None:
    one, two = backups(dest, stamps=STAMPS[:2])
    chunk_path(dest, one).unlink()
    code, _out, err = main("verify", "--dest", str(dest), "--sample", "0")
    assert code == ExitCode.MISSING_DATA == 17
    assert f"chunk {chunk_path(dest, one).name.removesuffix('.zst')} is missing" in err
    assert str(one) in err
    flip_chunk(dest, two)
    code, _out, _err = main("verify", "--dest", str(dest), "--read-data")
    assert code == ExitCode.INTEGRITY


@pytest.mark.parametrize("chunk", ["../../../config", "ab/../../x.zst"])
def test_verify_a_manifest_naming_a_chunk_by_a_path_is_10(
    main: Main, dest: Path, chunk: str
) -> None:
    from backupkit import edit_manifest  # noqa: PLC0415 - only here

    [folder] = backups(dest, stamps=STAMPS[:1])
    edit_manifest(folder, lambda doc: doc["disks"][0]["chunks"].__setitem__(0, chunk), reseal=True)
    code, out, err = main("verify", "--no-progress", str(folder))
    assert code == ExitCode.INTEGRITY
    assert "must be a list of chunk ids" in one_line_error(err)
    assert f"{folder}: CORRUPT" in out
    assert (dest / "config").is_file()  # nothing outside was read or touched


def test_verify_a_newer_repository_is_16(main: Main, dest: Path) -> None:
    backups(dest, stamps=STAMPS[:1])
    config = json.loads((dest / "config").read_text())
    (dest / "config").write_text(json.dumps({**config, "version": 4}))
    code, _out, err = main("verify", str(dest))
    assert code == ExitCode.REPOSITORY_VERSION == 16
    assert "repository format version 4; this vmsnap reads 3" in one_line_error(err)


def test_verify_a_folder_that_is_not_a_repository_is_15(main: Main, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    code, _out, err = main("verify", str(tmp_path / "x"))
    assert code == ExitCode.NOT_A_REPOSITORY == 15
    assert "is not a vmsnap repository" in one_line_error(err)


def test_verify_an_edited_domain_xml_is_10(main: Main, dest: Path) -> None:
    [folder] = backups(dest, stamps=STAMPS[:1])
    (folder / "domain.xml").write_text("<domain><name>evil</name></domain>")
    code, _out, err = main("verify", "--no-progress", str(folder))
    assert code == ExitCode.INTEGRITY
    assert "domain.xml was changed or damaged" in one_line_error(err)


# ---------------------------------------------------------------- a killed collection


def test_prune_killed_mid_collection_loses_nothing_a_manifest_needs(main: Main, dest: Path) -> None:
    backups(dest)
    env = dict(os.environ, VMSNAP_FAILPOINT="collecting")
    args = ["prune", "--dest", str(dest), "--keep-last", "1"]
    proc = subprocess.Popen(
        [VMSNAP, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stopped(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        assert stream is not None
        stream.close()
    assert present(dest) == STAMPS[3:]  # the manifests went first
    assert len(list((dest / "chunks").rglob("*.zst"))) == 3  # killed after one delete
    code, out, _err = main("verify", "--dest", str(dest), "--read-data")
    assert code == 0
    assert "1 backup(s) verified: 1 OK, 0 failed" in out
    code, out, _err = main("prune", "--dest", str(dest), "--keep-last", "1")
    assert code == 0
    assert "garbage collection: freed 2 of 3 chunk(s)" in out
    assert main("verify", "--dest", str(dest), "--read-data")[0] == 0
