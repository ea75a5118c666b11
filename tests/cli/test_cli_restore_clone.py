"""verify, restore and clone on the host: bad input is one clear line with its
own exit status, and nothing is touched."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from clikit import Main, one_line_error
from fakelvm import MiB, volume

from vmsnap import lvm
from vmsnap.errors import ExitCode, LeftBehindError
from vmsnap.models import LogicalVolume

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from backupkit import GUEST_UUID, chunk_path, disk_data, flip_bit, make_backup

HERE = Path(__file__).parent


def test_verify_ok_then_corrupt(main: Main, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    folder = make_backup(dest, "web01")
    code, out, err = main("verify", str(dest))
    assert code == 0, err
    assert "1 OK, 0 failed" in out
    chunk = chunk_path(dest, folder, "vda", 0)
    flip_bit(chunk, chunk.stat().st_size // 2)
    code, out, err = main("verify", str(folder))
    assert code == ExitCode.INTEGRITY
    assert "CORRUPT" in out
    assert "vmsnap: error: " in err
    assert "checksum" in err


def test_verify_missing_path(main: Main, tmp_path: Path) -> None:
    code, _out, err = main("verify", str(tmp_path / "nothing"))
    assert code == ExitCode.NOT_FOUND
    one_line_error(err)


def test_restore_needs_exactly_one_target(main: Main, tmp_path: Path) -> None:
    folder = make_backup(tmp_path / "dest", "web01")
    code, _out, err = main("restore", str(folder))
    assert code == ExitCode.USAGE
    assert "--to" in one_line_error(err)
    code, _out, err = main("restore", str(folder), "--to", "/dev/vg/x", "--vg", "vg")
    assert code == ExitCode.USAGE
    one_line_error(err)


def test_restore_of_a_missing_backup(main: Main, tmp_path: Path) -> None:
    make_backup(tmp_path / "dest", "web01")
    code, _out, err = main("restore", str(tmp_path / "none"), "--vg", "vg0")
    assert code == ExitCode.NOT_FOUND
    one_line_error(err)
    code, _out, err = main("restore", "--dest", str(tmp_path / "dest"), "web01", "--at", "2025",
                           "--vg", "vg0")  # fmt: skip
    assert code == ExitCode.NOT_FOUND
    assert "no backup of web01 at 2025" in one_line_error(err)
    code, _out, err = main("restore", "web01", "--vg", "vg0")  # a name, but no repository
    assert code == ExitCode.USAGE
    assert "--dest REPO" in one_line_error(err)


def test_restore_unknown_disk(main: Main, tmp_path: Path) -> None:
    folder = make_backup(tmp_path / "dest", "web01")
    code, _out, err = main("restore", str(folder), "--disk", "sdz", "--vg", "vg0")
    assert code == ExitCode.NOT_FOUND
    assert "sdz" in one_line_error(err)


def test_restore_of_a_corrupt_manifest(main: Main, tmp_path: Path) -> None:
    folder = make_backup(tmp_path / "dest", "web01")
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text().replace("web01", "web99"))
    code, _out, err = main("restore", str(folder), "--vg", "vg0")
    assert code == ExitCode.INTEGRITY
    assert "seal" in one_line_error(err)


def test_clone_start_without_define(main: Main, uri: str) -> None:
    code, _out, err = main("clone", "web01", "web02", "--no-define", "--start", "--connect", uri)
    assert code == ExitCode.USAGE
    one_line_error(err)


def test_clone_unknown_template(main: Main, uri: str) -> None:
    code, _out, err = main("clone", "nosuch", "web02", "--connect", uri)
    assert code == ExitCode.NOT_FOUND
    assert "nosuch" in one_line_error(err)


def test_clone_onto_an_existing_name(main: Main, uri: str) -> None:
    code, _out, err = main("clone", "web01", "db01", "--connect", uri)
    assert code == ExitCode.EXISTS  # checked first: before web01's disks, which are no LVs here
    assert "a guest named 'db01' already exists" in one_line_error(err)


def _host_has(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """This host's LVM, as ``lvs`` would report it: these LVs of vg0."""
    volumes = [
        LogicalVolume(
            vg="vg0",
            name=n,
            path=f"/dev/vg0/{n}",
            dm_path="",
            size=1 << 20,
            attr="",
            segtype="linear",
        )
        for n in names
    ]
    monkeypatch.setattr(lvm, "list_volumes", lambda *_a, **_k: list(volumes))


@pytest.mark.usefixtures("host_lvm_empty")
def test_clone_onto_an_existing_guest_name_exits_14(main: Main, tmp_path: Path, uri: str) -> None:
    folder = make_backup(tmp_path / "dest", "web01")
    code, _out, err = main("clone", str(folder), "db01", "--connect", uri)
    assert code == ExitCode.EXISTS == 14
    assert "already exists" in one_line_error(err)


def test_restore_onto_a_taken_lv_name_exits_14(
    main: Main, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_backup(tmp_path / "dest", "web01")
    _host_has(monkeypatch, "vdb-restored")
    code, _out, err = main("restore", str(folder), "--vg", "vg0")
    assert code == ExitCode.EXISTS == 14
    assert "vg0/vdb-restored already exists" in one_line_error(err)


@pytest.mark.usefixtures("host_lvm_empty")
@pytest.mark.parametrize("how", ["restore", "clone"])
def test_a_time_folder_without_its_manifest_is_refused(
    main: Main, tmp_path: Path, uri: str, how: str
) -> None:
    """An interrupted backup, or one still being written: its manifest comes last."""
    folder = make_backup(tmp_path / "dest", "web01")
    (folder / "manifest.json").unlink()
    args = ["--vg", "vg0"] if how == "restore" else ["web09", "--connect", uri]
    code, _out, err = main(how, str(folder), *args)
    assert code == ExitCode.NOT_FOUND
    assert "is not a published backup" in one_line_error(err)
    link = tmp_path / "looks-published"
    link.symlink_to(folder)
    code, _out, err = main(how, str(link), *args)
    assert code == ExitCode.NOT_FOUND
    assert "is not a published backup" in one_line_error(err)


@pytest.mark.parametrize("how", ["restore", "clone"])
def test_a_folder_outside_a_repository_exits_15(
    main: Main, tmp_path: Path, uri: str, how: str
) -> None:
    folder = tmp_path / "web01" / "20261127T042319Z"
    folder.mkdir(parents=True)
    args = ["--vg", "vg0"] if how == "restore" else ["web09", "--connect", uri]
    code, _out, err = main(how, str(folder), *args)
    assert code == ExitCode.NOT_A_REPOSITORY == 15
    assert "not a vmsnap repository" in one_line_error(err)


def _journal_naming(volumes: list[str]) -> Path:
    state = Path(os.environ["VMSNAP_STATE_DIR"])
    state.mkdir(mode=0o700)
    doc = {"pid": 1, "started": 0, "guests": [], "staging": [], "volumes": volumes}
    (state / "journal.json").write_text(json.dumps(doc))
    return state / "journal.json"


def _unfinished(name: str, *, tagged: bool = True) -> LogicalVolume:
    tags = (lvm.UNFINISHED_TAG,) if tagged else ()
    return LogicalVolume(
        vg="vg0", name=name, path="", dm_path="", size=1, attr="", segtype="linear", tags=tags
    )


@pytest.mark.parametrize("as_json", [False, True])
def test_cleanup_removes_the_half_written_lvs_a_dead_run_journaled(
    main: Main, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    """Only an LV the journal names *and* that still carries the unfinished tag:
    one that lost it was complete, one that is not journaled is not ours."""
    journal = _journal_naming(["vg0/web02-vda", "vg0/web02-vdb", "vg0/never-made"])
    there = [_unfinished("web02-vda"), _unfinished("stranger")]
    monkeypatch.setattr(lvm, "tagged", lambda tag: there if tag == lvm.UNFINISHED_TAG else [])
    monkeypatch.setattr(lvm, "leftover_snapshots", lambda: [])
    removed: list[str] = []
    monkeypatch.setattr(lvm, "remove_volume", lambda lv: removed.append(lv.full_name))
    code, out, err = main("cleanup", "--dry-run", *(["--json"] if as_json else []))
    assert (code, removed) == (0, []), err
    assert journal.exists()
    code, out, err = main("cleanup", *(["--json"] if as_json else []))
    assert code == 0, err
    assert removed == ["vg0/web02-vda"]
    if as_json:
        assert json.loads(out)["volumes"] == ["vg0/web02-vda"]
    else:
        assert out == "remove unfinished LV vg0/web02-vda\n"
    assert not journal.exists()


def test_cleanup_keeps_an_unfinished_lv_it_cannot_remove_on_record(
    main: Main, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _journal_naming(["vg0/web02-vda"])
    monkeypatch.setattr(lvm, "tagged", lambda _tag: [_unfinished("web02-vda")])
    monkeypatch.setattr(lvm, "leftover_snapshots", lambda: [])

    def busy(lv: LogicalVolume) -> None:
        raise LeftBehindError(f"could not remove {lv.full_name}: in use")

    monkeypatch.setattr(lvm, "remove_volume", busy)
    code, _out, err = main("cleanup")
    assert code == ExitCode.LEFT_BEHIND
    assert "vmsnap: error: could not remove vg0/web02-vda: in use" in err.splitlines()
    assert json.loads(journal.read_text())["volumes"] == ["vg0/web02-vda"]  # to try again


def test_restore_waits_for_the_run_lock(
    main: Main, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore is a job like the others: a prune must not remove the backup
    it reads, nor a backup's cleanup mistake its journal for a dead run's."""
    from vmsnap import lock  # noqa: PLC0415 - only this test shortens the wait

    folder = make_backup(tmp_path / "dest", "web01")
    monkeypatch.setattr(lock, "DEFAULT_WAIT", 0.3)
    with lock.run_lock(wait=0.3):
        code, _out, err = main("restore", str(folder), "--vg", "vg0")
    assert code == ExitCode.LOCKED
    waiting, error = err.splitlines()  # the wait says who holds the lock, then the error
    assert f"held by pid {os.getpid()}" in waiting
    assert f"another vmsnap run (pid {os.getpid()}) holds" in one_line_error(error)


def test_verify_never_follows_a_link_inside_the_destination(main: Main, tmp_path: Path) -> None:
    """It used to verify a linked backup folder and write verified.json outside."""
    dest = tmp_path / "dest"
    folder = make_backup(dest, "web01")
    outside = make_backup(tmp_path / "outside", "db01")
    (dest / "backups" / "db01").symlink_to(outside.parent)
    code, out, err = main("verify", str(dest))
    assert code == ExitCode.OK, err
    assert "db01" not in out
    assert not (outside / "verified.json").exists()
    assert (folder / "verified.json").exists()


@pytest.mark.usefixtures("host_lvm_empty")
def test_clone_xml_file_is_checked_before_anything(main: Main, tmp_path: Path, uri: str) -> None:
    folder = make_backup(tmp_path / "dest", "web01")
    taken = tmp_path / "taken.xml"
    taken.write_text("mine")
    code, _out, err = main("clone", str(folder), "web09", "--no-define", "--xml", str(taken),
                           "--connect", uri)  # fmt: skip
    assert code == ExitCode.EXISTS
    assert "exists; refusing to overwrite it" in one_line_error(err)
    assert taken.read_text() == "mine"
    nowhere = tmp_path / "no-such-folder" / "web09.xml"
    code, _out, err = main("clone", str(folder), "web09", "--xml", str(nowhere), "--connect", uri)
    assert code == ExitCode.DESTINATION
    assert "no such folder" in one_line_error(err)
    assert not Path(os.environ["VMSNAP_STATE_DIR"]).exists()  # refused before the job began


def test_clone_no_define_prints_only_the_xml_on_stdout(
    main: Main, uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No file appears in the current folder: the XML goes to stdout, alone (to
    pipe into virsh define), the summary to stderr."""
    from vmsnap import clone  # noqa: PLC0415 - only this test replaces the job

    xml = "<domain type='kvm'><name>web09</name></domain>"
    seen: list[clone.CloneSettings] = []

    def fake(_conn: object, settings: clone.CloneSettings, _progress: object) -> clone.CloneResult:
        seen.append(settings)
        return clone.CloneResult(name="web09", uuid="u-1", xml=xml)

    monkeypatch.setattr(clone, "clone", fake)
    monkeypatch.chdir(tmp_path)
    code, out, err = main("clone", "web01", "web09", "--no-define", "-c", uri)
    assert code == 0, err
    assert out == xml + "\n"
    assert "web09: not defined, uuid u-1" in err
    assert (seen[0].define, seen[0].xml_file) == (False, None)
    assert list(tmp_path.iterdir()) == [tmp_path / "node.xml"]


# ---------------------------------------------------------------- onto LVs (the fake LVM's files)


@pytest.fixture
def lvs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake LVM tools first on PATH, vg0 holding only ``old`` (8 MiB, not
    open); a new LV's device is a file in the folder returned."""
    devices = tmp_path / "devices"
    devices.mkdir()
    old = volume("old", 8 * MiB)
    old.update(lv_path=str(devices / "old"), lv_attr="-wi-a-----")
    (devices / "old").write_bytes(b"\xee" * (8 * MiB))
    state = tmp_path / "lvm.json"
    state.write_text(json.dumps([old]))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "fakelvm"
    script.write_text(f"#!{sys.executable}\n" + (HERE / "fakelvm.py").read_text())
    script.chmod(0o755)
    for tool in ("lvs", "vgs", "lvcreate", "lvremove", "lvchange"):
        (bin_dir / tool).symlink_to(script)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LVM_STATE", str(state))
    monkeypatch.setenv("FAKE_LVM_DEVICES", str(devices))
    return devices


def head(device: Path, data: bytes) -> bool:
    """The device (rounded up to whole sectors, as lvcreate does) starts with ``data``."""
    return device.read_bytes()[: len(data)] == data


def lv_files(devices: Path) -> set[str]:
    return {p.name for p in devices.iterdir()}


def test_restore_by_folder_and_by_name_onto_new_lvs(main: Main, tmp_path: Path, lvs: Path) -> None:
    dest = tmp_path / "dest"
    make_backup(dest, "web01", "20261126T010000Z", disks={"vda": disk_data(1)})
    newest = make_backup(dest, "web01", disks={"vda": disk_data(2), "vdb": disk_data(3)})
    code, out, err = main("restore", str(newest), "--disk", "vdb", "--vg", "vg0", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["backup"] == str(newest)
    assert [(d["path"], d["created"]) for d in doc["disks"]] == [(str(lvs / "vdb-restored"), True)]
    assert head(lvs / "vdb-restored", disk_data(3))
    code, out, err = main("restore", "--dest", str(dest), "web01", "--at", "20261126",
                          "--vg", "vg0", "--name", "old-vda")  # fmt: skip
    assert code == 0, err
    assert head(lvs / "old-vda", disk_data(1))
    assert f"restored {dest}/backups/web01/20261126T010000Z" in err
    assert out.startswith(f"vda: restored onto {lvs / 'old-vda'} (new LV), ")
    assert json.loads((tmp_path / "lvm.json").read_text())[-1]["lv_tags"] == ""  # complete


def test_restore_onto_an_existing_lv_needs_force(main: Main, tmp_path: Path, lvs: Path) -> None:
    folder = make_backup(tmp_path / "dest", "web01", disks={"vda": disk_data(4)})
    code, _out, err = main("restore", str(folder), "--to", str(lvs / "old"))
    assert code == ExitCode.DESTINATION
    assert "--force" in one_line_error(err)
    code, out, err = main("restore", str(folder), "--to", str(lvs / "old"), "--force")
    assert code == 0, err
    data = (lvs / "old").read_bytes()
    assert data[: len(disk_data(4))] == disk_data(4)
    assert data[len(disk_data(4)) :] == b"\xee" * (8 * MiB - len(disk_data(4)))
    assert "(existing LV)" in out


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_damaged_chunk_is_refused_and_leaves_nothing(
    main: Main, tmp_path: Path, lvs: Path, damage: str
) -> None:
    """A corrupt chunk is status 10, a missing one 17; one line names the
    backup and the chunk, and every new LV is gone again."""
    dest = tmp_path / "dest"
    folder = make_backup(dest, "web01", disks={"vda": disk_data(5), "vdb": disk_data(6)})
    bad = chunk_path(dest, folder, "vdb", 0)
    if damage == "corrupt":
        flip_bit(bad, bad.stat().st_size // 2)
    else:
        bad.unlink()
    before = (tmp_path / "lvm.json").read_text()
    code, _out, err = main("restore", "--dest", str(dest), "web01", "--vg", "vg0", "--name", "x",
                           "--no-progress")  # fmt: skip
    line = one_line_error(err)
    if damage == "corrupt":
        assert code == ExitCode.INTEGRITY == 10
        assert f"{folder}: chunk {bad.name.removesuffix('.zst')} is corrupt" in line
    else:
        assert code == ExitCode.MISSING_DATA == 17
        assert f"{folder}: chunk {bad.name.removesuffix('.zst')} is missing" in line
    assert (tmp_path / "lvm.json").read_text() == before  # x-vda was removed again, or never made
    assert lv_files(lvs) == {"old"}
    assert not (Path(os.environ["VMSNAP_STATE_DIR"]) / "journal.json").exists()


def test_restore_of_an_image_store_backup(main: Main, tmp_path: Path, lvs: Path) -> None:
    dest, src = tmp_path / "dest", tmp_path / "disk.raw"
    src.write_bytes(disk_data(8))
    assert main("init", "--dest", str(dest))[0] == 0
    assert main("image", "store", str(src), "--dest", str(dest), "--name", "img")[0] == 0
    code, _out, err = main("restore", "--dest", str(dest), "img", "--vg", "vg0")
    assert code == ExitCode.USAGE
    assert "--name" in one_line_error(err)
    code, _out, err = main("restore", "--dest", str(dest), "img", "--vg", "vg0", "--name", "i")
    assert code == 0, err
    assert head(lvs / "i", disk_data(8))
    code, _out, err = main("restore", "--dest", str(dest), "img", "--to", str(lvs / "old"),
                           "--force")  # fmt: skip
    assert code == 0, err
    assert (lvs / "old").read_bytes()[: len(disk_data(8))] == disk_data(8)


GUEST_XML = """<domain type='kvm'><name>web01</name><uuid>{uuid}</uuid>
  <devices>
    <disk type='block' device='disk'><source dev='/dev/vg0/vda'/><target dev='vda'/></disk>
    <disk type='block' device='disk'><source dev='/dev/vg0/vdb'/><target dev='vdb'/></disk>
  </devices></domain>"""


@pytest.mark.parametrize("how", ["folder", "name"])
def test_clone_from_a_backup(main: Main, tmp_path: Path, uri: str, lvs: Path, how: str) -> None:
    dest = tmp_path / "dest"
    xml = GUEST_XML.format(uuid=GUEST_UUID).encode()
    folder = make_backup(dest, "web01", disks={"vda": disk_data(1), "vdb": disk_data(2)}, xml=xml)
    source = [str(folder)] if how == "folder" else ["--from-backup", "web01", "--dest", str(dest)]
    code, out, err = main("clone", *source, "web09", "--no-define", "--xml",
                          str(tmp_path / "web09.xml"), "--connect", uri, "--json")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["backup"] == str(folder)
    assert [d["path"] for d in doc["disks"]] == [str(lvs / "web09-vda"), str(lvs / "web09-vdb")]
    assert head(lvs / "web09-vda", disk_data(1))
    assert head(lvs / "web09-vdb", disk_data(2))
    assert "/dev/vg0/web09-vda" in (tmp_path / "web09.xml").read_text()
    assert GUEST_UUID not in doc["domain_xml"]


def test_clone_refuses_a_domain_xml_that_is_not_the_manifests(
    main: Main, tmp_path: Path, uri: str, lvs: Path
) -> None:
    dest = tmp_path / "dest"
    folder = make_backup(dest, "web01", xml=GUEST_XML.format(uuid=GUEST_UUID).encode())
    (folder / "domain.xml").write_text(GUEST_XML.format(uuid="0" * 32))
    code, _out, err = main("clone", str(folder), "web09", "--no-define", "--connect", uri)
    assert code == ExitCode.INTEGRITY
    assert "domain.xml does not match" in one_line_error(err)
    assert lv_files(lvs) == {"old"}


def test_clone_of_an_image_store_backup_is_refused(main: Main, tmp_path: Path, uri: str) -> None:
    dest, src = tmp_path / "dest", tmp_path / "disk.raw"
    src.write_bytes(disk_data(8))
    assert main("init", "--dest", str(dest))[0] == 0
    assert main("image", "store", str(src), "--dest", str(dest), "--name", "img")[0] == 0
    code, _out, err = main("clone", "--dest", str(dest), "img", "web09", "--connect", uri)
    assert code == ExitCode.USAGE
    assert "it has no guest to clone" in one_line_error(err)


def test_the_configured_dest_names_backups_for_restore_but_not_clone(
    main: Main, tmp_path: Path, uri: str, lvs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """restore NAME looks in the configuration file's dest; clone NAME stays a
    template guest unless --from-backup says otherwise."""
    dest = tmp_path / "dest"
    xml = GUEST_XML.format(uuid=GUEST_UUID).encode()
    make_backup(dest, "web01", disks={"vda": disk_data(1), "vdb": disk_data(2)}, xml=xml)
    conf = tmp_path / "vmsnap.toml"
    conf.write_text(f'dest = "{dest}"\n')
    monkeypatch.setenv("VMSNAP_CONFIG", str(conf))
    code, _out, err = main("restore", "web01", "--disk", "vda", "--vg", "vg0", "--name", "c")
    assert code == 0, err
    assert head(lvs / "c", disk_data(1))
    code, _out, err = main("clone", "web01", "web09", "--no-define", "--connect", uri)
    assert code == ExitCode.UNSUPPORTED_DISK  # the live guest web01, whose disk is no LV here
    code, _out, err = main("clone", "--from-backup", "web01", "web09", "--no-define",
                           "--connect", uri)  # fmt: skip
    assert code == 0, err
    assert head(lvs / "web09-vdb", disk_data(2))


def test_a_folder_that_names_no_single_backup_or_a_folder_with_dest(
    main: Main, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    folder = make_backup(dest, "web01")
    for path in (dest, dest / "backups", dest / "backups" / "web01"):
        code, _out, err = main("restore", str(path), "--vg", "vg0")
        assert code == ExitCode.USAGE
        assert "is not one backup's folder" in one_line_error(err)
    code, _out, err = main("restore", "--dest", str(dest), str(folder), "--vg", "vg0")
    assert code == ExitCode.USAGE
    assert "by its guest's name" in one_line_error(err)
