"""vmsnap prune, vmsnap backups, the verify record, the configuration file and
--log-file, on real backup folders built by backupkit (no LVM)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from clikit import Main, one_line_error

from vmsnap import backup
from vmsnap.errors import ExitCode
from vmsnap.hooks import NO_HOOKS
from vmsnap.models import SizeSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from backupkit import edit_manifest, flip_bit, make_backup, random_bytes

STAMPS = ["20261101T020000Z", "20261102T020000Z", "20261102T140000Z", "20261103T020000Z"]


def created(stamp: str) -> str:
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"


def backups(dest: Path, guest: str = "web01", stamps: list[str] = STAMPS) -> list[Path]:
    folders = []
    for stamp in stamps:
        folder = make_backup(dest, guest, stamp, disks={"vda": random_bytes(5000)})
        edit_manifest(folder, lambda doc, s=stamp: doc.update(created=created(s)), reseal=True)
        folders.append(folder)
    return folders


def present(dest: Path, guest: str = "web01") -> list[str]:
    return sorted(p.name for p in (dest / guest).iterdir())


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


def test_prune_dry_run_json(main: Main, dest: Path) -> None:
    backups(dest)
    backups(dest, "db01", STAMPS[:1])
    (dest / "web01" / "20261104T020000Z.partial").mkdir()
    code, out, _err = main("prune", "--dest", str(dest), "--keep-daily", "1", "--dry-run", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["dry_run"] is True
    assert doc["policy"] == {"keep_last": 0, "keep_daily": 1, "keep_weekly": 0, "keep_monthly": 0}
    web = next(g for g in doc["guests"] if g["guest"] == "web01")
    assert [k["stamp"] for k in web["keep"]] == [STAMPS[3]]
    assert web["keep"][0]["reasons"] == ["daily 2026-11-03"]
    assert sorted(r["stamp"] for r in web["remove"]) == STAMPS[:3]
    assert web["partials"] == [str(dest / "web01" / "20261104T020000Z.partial")]
    assert set(web["keep"][0]) >= {"directory", "created", "size", "compressed_size", "verified"}
    db = next(g for g in doc["guests"] if g["guest"] == "db01")
    assert ([k["stamp"] for k in db["keep"]], db["remove"]) == ([STAMPS[0]], [])
    assert len(present(dest)) == 5  # nothing removed


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
    code, _out, err = main("prune", "--dest", str(dest), "--keep-last", "1", "web99")
    assert code == ExitCode.NOT_FOUND
    assert "no backups of web99" in one_line_error(err)


@pytest.mark.parametrize("command", [["prune", "--keep-last", "1"], ["backups"]])
def test_a_missing_dest_is_a_destination_error(
    main: Main, tmp_path: Path, command: list[str]
) -> None:
    """The same status as backup's (9), not 3."""
    code, _out, err = main(*command, "--dest", str(tmp_path / "nope"))
    assert code == ExitCode.DESTINATION
    assert one_line_error(err) == (
        f"vmsnap: error: destination {tmp_path / 'nope'} does not exist (create it first)"
    )


def test_prune_waits_for_the_run_lock(
    main: Main, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmsnap import lock  # noqa: PLC0415 - only this test shortens the wait

    backups(dest)
    monkeypatch.setattr(lock, "DEFAULT_WAIT", 0.3)
    with lock.run_lock(wait=0.3):  # a backup is running: its .partial is being written
        code, _out, err = main("prune", "--dest", str(dest), "--keep-last", "1")
    assert code == ExitCode.LOCKED
    assert "another vmsnap run holds" in one_line_error(err)
    assert present(dest) == STAMPS


def test_prune_cannot_remove_is_destination_error(main: Main, dest: Path) -> None:
    backups(dest)
    (dest / "web01").chmod(0o500)
    try:
        code, _out, err = main("prune", "--dest", str(dest), "--keep-last", "1")
    finally:
        (dest / "web01").chmod(0o700)
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
    (dest / "web01" / "20261104T020000Z.partial").mkdir()
    code, out, _err = main("backups", "--dest", str(dest), "--json")
    assert code == 0
    [guest] = json.loads(out)
    assert guest["guest"] == "web01"
    assert [b["stamp"] for b in guest["backups"]] == [STAMPS[1], STAMPS[0]]
    first = guest["backups"][0]
    assert first["created"] == created(STAMPS[1])
    assert (first["size"], first["disks"], first["verified"]) == (5000, ["vda"], None)
    assert first["compressed_size"] > 0
    assert first["age_seconds"] > 0
    assert guest["partials"] == [str(dest / "web01" / "20261104T020000Z.partial")]

    flip_bit(folders[0] / "vda.img.zst", 100)
    code, _out, _err = main("verify", str(dest / "web01"))
    assert code == ExitCode.INTEGRITY
    code, out, _err = main("backups", "--dest", str(dest), "--json", "web01")
    states = [b["verified"]["status"] for b in json.loads(out)[0]["backups"]]
    assert states == ["OK", "CORRUPT"]
    assert [b["good"] for b in json.loads(out)[0]["backups"]] == [True, False]
    code, out, _err = main("backups", "--dest", str(dest))
    assert code == 0
    assert "OK 20" in out
    assert "CORRUPT 20" in out
    assert "unpublished" in out


def test_a_failed_verify_keeps_a_backup_out_of_retention(main: Main, dest: Path) -> None:
    folders = backups(dest)
    flip_bit(folders[3] / "vda.img.zst", 100)
    main("verify", str(folders[3]))
    code, _out, _err = main("prune", "--dest", str(dest), "--keep-last", "1")
    assert code == 0
    assert present(dest) == STAMPS[2:]  # the newest good one, and the corrupt one left alone


def test_backups_needs_a_dest(main: Main) -> None:
    code, _out, err = main("backups")
    assert code == ExitCode.USAGE
    assert "--dest DIR is required" in one_line_error(err)


# ---------------------------------------------------------------- config file


def test_a_bad_config_file_is_one_usage_error(main: Main, dest: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('dest = "/x"\nlevle = 3\n')
    code, _out, err = main("--config", str(bad), "backups")
    assert code == ExitCode.USAGE
    assert one_line_error(err) == (
        f"vmsnap: error: {bad}:2: levle: unknown key (known: connect, dest, guests, hooks_dir, "
        "level, quiesce, retention, snapshot_size, thin_pool_limit)"
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
    assert [g["folder"] for g in json.loads(out)] == [str(other / "web01")]


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


def test_backups_and_prune_say_which_links_they_ignore(
    main: Main, dest: Path, tmp_path: Path
) -> None:
    """One link policy with verify: never followed, and named (it was silent)."""
    backups(dest, stamps=STAMPS[:1])
    outside = backups(tmp_path / "outside", "db01", STAMPS[:2])
    (dest / "db01").symlink_to(outside[0].parent)
    for args in (["backups"], ["prune", "--keep-last", "1"]):
        code, out, err = main(*args, "--dest", str(dest))
        assert code == ExitCode.OK
        assert "db01" not in out
        assert f"{dest / 'db01'}: ignored, a symbolic link" in err
    assert present(tmp_path / "outside", "db01") == STAMPS[:2]
    code, _out, err = main("backups", "--dest", str(dest), "db01")
    assert code == ExitCode.NOT_FOUND
    assert "is a symbolic link, not followed" in one_line_error(err)


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
