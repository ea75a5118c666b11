"""manifest.py: the seal, the strict reader, and finding backup folders under
a backup, a guest's folder or a whole destination."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from backupkit import edit_manifest, make_backup, manifest_doc, read_manifest

from vmsnap import manifest, store
from vmsnap.errors import ExitCode, IntegrityError, NotFoundError

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture
def doc() -> dict[str, Any]:
    disk = {
        "target": "vda",
        "volume": "vg0/web01-root",
        "size": 1024,
        "chunk_sha256": "a" * 64,
        "image": "vda.img.zst",
        "compressed_size": 99,
        "snapshot": {"kind": "thin", "size": None},
    }
    return manifest_doc("wéb01", [disk])


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    return make_backup(tmp_path / "dest")


# ---------------------------------------------------------------- seal


def test_seal_is_the_sha256_of_the_canonical_json(doc: dict[str, Any]) -> None:
    sealed = manifest.seal(doc)
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert sealed["seal"] == "sha256:" + hashlib.sha256(body.encode()).hexdigest()
    assert list(sealed)[-1] == "seal"
    assert {k: v for k, v in sealed.items() if k != "seal"} == doc
    assert "seal" not in doc  # the input is left alone
    manifest.check_seal(sealed)


def test_seal_ignores_member_order_and_white_space(doc: dict[str, Any]) -> None:
    sealed = manifest.seal(doc)
    reordered = json.loads(json.dumps(dict(reversed(list(sealed.items()))), indent=7))
    manifest.check_seal(reordered)
    assert manifest.seal(reordered) == sealed


def test_seal_replaces_an_old_seal(doc: dict[str, Any]) -> None:
    sealed = manifest.seal(doc)
    assert manifest.seal(sealed) == sealed
    assert manifest.seal({**sealed, "seal": "sha256:" + "0" * 64}) == sealed


@pytest.mark.parametrize(
    ("seal", "match"),
    [
        (None, "no seal"),
        ("sha256:" + "0" * 64, "does not match"),
        ("sha256:" + "A" * 64, "malformed"),
        ("md5:" + "0" * 32, "malformed"),
        ("sha256:abc", "malformed"),
        (42, "malformed"),
    ],
)
def test_check_seal_rejects(doc: dict[str, Any], seal: object, match: str) -> None:
    bad = doc if seal is None else {**doc, "seal": seal}
    with pytest.raises(IntegrityError, match=match):
        manifest.check_seal(bad)


MAN_PAGE = Path(__file__).parents[2] / "man" / "vmsnap-format.5"


def hand_check_script() -> str:
    """The Python code of the seal check that vmsnap-format(5) shows."""
    text = MAN_PAGE.read_text().replace("\\-", "-")
    start = text.index("python3 -c '") + len("python3 -c '")
    return text[start : text.index("' manifest.json", start)]


def test_the_man_pages_hand_check_agrees(backup: Path) -> None:
    script, path = hand_check_script(), str(backup / store.MANIFEST)
    run = subprocess.run([sys.executable, "-c", script, path], capture_output=True, check=True)
    assert run.stdout == b"True\n"
    edit_manifest(backup, lambda d: d["domain"].update(name="evil"))
    run = subprocess.run([sys.executable, "-c", script, path], capture_output=True, check=True)
    assert run.stdout == b"False\n"


# ---------------------------------------------------------------- load


def test_load_a_backup(backup: Path) -> None:
    found = manifest.load(backup)
    doc = read_manifest(backup)
    assert found.directory == backup
    assert (found.format_version, found.vmsnap_version) == (2, "0.1.0")
    assert (found.domain_name, found.hypervisor, found.host) == ("web01", "kvm", "kvm1.example.org")
    assert found.domain_uuid == doc["domain"]["uuid"]
    assert found.created == "2026-11-27T04:23:19Z"
    assert found.quiesce == doc["quiesce"]
    assert found.skipped == (("sda", "cdrom"),)
    assert [d.target for d in found.disks] == ["vda", "vdb"]
    vda = found.disks[0]
    entry = doc["disks"][0]
    assert vda == manifest.ManifestDisk(
        target="vda",
        volume="vg0/vda",
        size=entry["size"],
        chunk_sha256=entry["chunk_sha256"],
        image="vda.img.zst",
        compressed_size=(backup / "vda.img.zst").stat().st_size,
        snapshot_kind="thick",
        snapshot_size=4 << 20,
    )
    assert found.image_path(vda) == backup / "vda.img.zst"
    assert found.total_size == sum(d["size"] for d in doc["disks"])


def test_load_keeps_non_ascii_names(tmp_path: Path) -> None:
    folder = make_backup(tmp_path, guest="wéb 01/日本", disks={"vda": b"x" * 100})
    assert "\\u00e9" in (folder / store.MANIFEST).read_text()  # written escaped, as vmsnap does
    assert manifest.load(folder).domain_name == "wéb 01/日本"


def test_missing_manifest_is_not_found(backup: Path) -> None:
    (backup / store.MANIFEST).unlink()
    with pytest.raises(NotFoundError, match=r"manifest\.json is missing") as info:
        manifest.load(backup)
    assert info.value.exit_code == ExitCode.NOT_FOUND


def reject(folder: Path, match: str) -> IntegrityError:
    with pytest.raises(IntegrityError, match=match) as info:
        manifest.load(folder)
    error = info.value
    assert error.exit_code == ExitCode.INTEGRITY
    assert "\n" not in str(error)
    assert str(error).startswith(f"{folder / store.MANIFEST}: ")
    return error


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (b'"vmsnap-backup"', "not a JSON object"),
        (b"[" * 100_000, "nested too deeply|not valid JSON"),
        (b'{"format": "vmsnap-backup", "format": "x"}', "'format' appears twice"),
        (b'{"format": "vmsnap-backup", "format_version": NaN}', "NaN is not a JSON number"),
    ],
)
def test_load_rejects_what_is_not_a_manifest(backup: Path, text: bytes, match: str) -> None:
    (backup / store.MANIFEST).write_bytes(text)
    reject(backup, match)


def test_load_refuses_a_huge_file(backup: Path) -> None:
    with (backup / store.MANIFEST).open("r+b") as f:
        f.truncate(manifest.MAX_BYTES + 1)
    reject(backup, "larger than")


def set_(key: str, value: object) -> Edit:
    return lambda d: d.update({key: value})


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        pytest.param(set_("format", "borg"), "format is 'borg', not 'vmsnap-backup'", id="format"),
        pytest.param(lambda d: d.pop("format"), "format is None", id="no-format"),
        pytest.param(set_("format_version", 3), "format_version 3 is not one", id="version-3"),
        pytest.param(set_("format_version", 0), "format_version 0", id="version-0"),
        pytest.param(set_("format_version", "2"), "format_version '2'", id="version-str"),
        pytest.param(set_("format_version", True), "format_version True", id="version-bool"),
        pytest.param(set_("format_version", 1.0), "format_version 1.0", id="version-float"),
        pytest.param(lambda d: d.pop("format_version"), "format_version None", id="no-version"),
    ],
)
def test_load_rejects_an_unknown_format(backup: Path, edit: Edit, match: str) -> None:
    edit_manifest(backup, edit, reseal=True)
    reject(backup, match)


def test_a_newer_version_gets_a_hint(backup: Path) -> None:
    edit_manifest(backup, set_("format_version", 3), reseal=True)
    assert reject(backup, "format_version").hint == "written by a newer vmsnap?"


def disk0(key: str, value: object) -> Edit:
    return lambda d: d["disks"][0].update({key: value})


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d["domain"].update(name="db01"), id="domain-name"),
        pytest.param(disk0("chunk_sha256", "0" * 64), id="chunk_sha256"),
        pytest.param(disk0("size", 1), id="size"),
        pytest.param(disk0("image", "vdb.img.zst"), id="image"),
        pytest.param(lambda d: d["disks"].pop(), id="a-disk-removed"),
        pytest.param(lambda d: d["quiesce"].update(window_seconds=0.0), id="window"),
        pytest.param(set_("extra", 1), id="member-added"),
    ],
)
def test_an_edited_manifest_breaks_its_seal(backup: Path, edit: Edit) -> None:
    edit_manifest(backup, edit)
    reject(backup, "seal does not match the contents")


def test_a_manifest_without_seal_is_rejected(backup: Path) -> None:
    edit_manifest(backup, lambda d: d.pop("seal"))
    reject(backup, "no seal")


def test_text_that_is_not_unicode_breaks_the_seal(backup: Path) -> None:
    text = (backup / store.MANIFEST).read_text().replace('"web01"', '"\\ud800"')
    (backup / store.MANIFEST).write_text(text)
    reject(backup, "not valid Unicode")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        pytest.param(lambda d: d.pop("host"), "^[^:]*: host is missing", id="host-missing"),
        pytest.param(set_("host", None), "host must be a string, not None", id="host-null"),
        pytest.param(lambda d: d["domain"].pop("uuid"), "domain.uuid is missing", id="uuid"),
        pytest.param(set_("domain", "web01"), "domain must be an object", id="domain-str"),
        pytest.param(set_("created", "yesterday"), "created 'yesterday' is not a time", id="time"),
        pytest.param(set_("quiesce", []), "quiesce must be an object", id="quiesce"),
        pytest.param(
            lambda d: d["quiesce"].update(window_seconds="0.4"),
            "quiesce.window_seconds must be a number",
            id="window-str",
        ),
        pytest.param(
            lambda d: d["quiesce"].update(frozen_filesystems=-1),
            "quiesce.frozen_filesystems must not be negative",
            id="frozen-negative",
        ),
        pytest.param(set_("disks", {}), "disks must be an array", id="disks-object"),
        pytest.param(set_("disks", []), "lists no disks", id="no-disks"),
        pytest.param(set_("disks", [1]), r"disks\[0\] must be an object", id="disk-int"),
        pytest.param(
            lambda d: d["disks"][1].pop("size"), r"disks\[1\].size is missing", id="size-missing"
        ),
        pytest.param(disk0("size", "1024"), r"disks\[0\].size must be an integer", id="size-str"),
        pytest.param(disk0("size", True), "must be an integer, not True", id="size-bool"),
        pytest.param(disk0("size", 1.5), "must be an integer, not 1.5", id="size-float"),
        pytest.param(disk0("size", -1), "must not be negative", id="size-negative"),
        pytest.param(disk0("compressed_size", None), "compressed_size must be", id="csize-null"),
        pytest.param(disk0("chunk_sha256", "A" * 64), "64 lower-case hex", id="sha-upper"),
        pytest.param(disk0("chunk_sha256", "a" * 63), "64 lower-case hex", id="sha-short"),
        pytest.param(
            disk0("snapshot", {"kind": "qcow2", "size": None}),
            r"disks\[0\].snapshot.kind 'qcow2' is not thick or thin",
            id="kind",
        ),
        pytest.param(
            disk0("snapshot", {"kind": "thin", "size": "4G"}),
            r"disks\[0\].snapshot.size must be an integer or null",
            id="snapshot-size",
        ),
        pytest.param(disk0("target", "vdb"), "same target 'vdb'", id="same-target"),
        pytest.param(disk0("image", "vdb.img.zst"), "same image 'vdb.img.zst'", id="same-image"),
        pytest.param(set_("skipped", [{"target": "sda"}]), r"skipped\[0\].reason", id="skipped"),
    ],
)
def test_load_rejects_missing_or_ill_typed_fields(backup: Path, edit: Edit, match: str) -> None:
    edit_manifest(backup, edit, reseal=True)
    reject(backup, match)


@pytest.mark.parametrize(
    "name",
    ["../x", "..", ".", "", "/etc/passwd", "a/b", "sub/", ".hidden", "a\0b", "manifest.json"],
)
def test_load_rejects_an_image_outside_the_folder(backup: Path, name: str) -> None:
    edit_manifest(backup, disk0("image", name), reseal=True)
    reject(backup, "image name")


def test_load_accepts_unknown_members_under_the_seal(backup: Path) -> None:
    edit_manifest(backup, set_("comment", "added by a later writer"), reseal=True)
    assert manifest.load(backup).domain_name == "web01"


def test_an_unreadable_manifest_is_rejected(backup: Path) -> None:
    (backup / store.MANIFEST).unlink()
    (backup / store.MANIFEST).mkdir()
    reject(backup, "cannot read it: Is a directory")


def test_load_does_not_mutate_what_it_returns(backup: Path) -> None:
    found = manifest.load(backup)
    quiesce = copy.deepcopy(found.quiesce)
    assert manifest.load(backup).quiesce == quiesce


def test_what_build_writes_load_reads_back(tmp_path: Path) -> None:
    """The one writer and the one reader of the format agree, member for member."""
    from vmsnap.models import Guest, QuiesceMode  # noqa: PLC0415 - the writer's inputs
    from vmsnap.quiesce import Window  # noqa: PLC0415
    from vmsnap.snapstream import DiskResult  # noqa: PLC0415

    guest = Guest("wéb01", "6c1b7f3e-2d4a-4f0e-9b8a-3e5d1c2f4a7b", "running", "kvm", ())
    window = Window(QuiesceMode.AUTO, "freeze", "running", 2, 0.41234, "")
    disks = [
        DiskResult("vda", "vg0/root", 1024, "a" * 64, "vda.img.zst", 99, "thick", 4 << 20, 12.5),
        DiskResult("vdb", "vg0/data", 2048, "b" * 64, "vdb.img.zst", 7, "thin", None),
    ]
    doc = manifest.build(
        host="kvm1",
        guest=guest,
        domain_xml_sha256="c" * 64,
        created=1795753399.7,
        window=window,
        disks=disks,
        skipped=[("hdc", "cdrom")],
    )
    store.write_json(tmp_path / store.MANIFEST, doc)
    got = manifest.load(tmp_path)
    assert (got.format_version, got.host, got.created) == (
        manifest.FORMAT_VERSION,
        "kvm1",
        "2026-11-27T04:23:19Z",
    )
    assert (got.domain_name, got.domain_uuid, got.hypervisor) == ("wéb01", guest.uuid, "kvm")
    assert got.domain_xml_sha256 == "c" * 64
    assert got.quiesce["mode"] == "freeze"
    assert (got.quiesce["window_seconds"], got.quiesce["frozen_filesystems"]) == (0.412, 2)
    assert [(d.target, d.volume, d.size, d.image) for d in got.disks] == [
        ("vda", "vg0/root", 1024, "vda.img.zst"),
        ("vdb", "vg0/data", 2048, "vdb.img.zst"),
    ]
    assert [(d.snapshot_kind, d.snapshot_size) for d in got.disks] == [
        ("thick", 4 << 20),
        ("thin", None),
    ]
    assert got.skipped == (("hdc", "cdrom"),)
    assert list(doc)[-1] == manifest.SEAL_KEY


def test_the_test_kit_writes_what_build_writes() -> None:
    """backupkit's hand-made manifests have build()'s members (tests stay honest)."""
    assert manifest_doc("web01", [])["format_version"] == manifest.FORMAT_VERSION
    assert manifest_doc("web01", [])["format"] == manifest.FORMAT
