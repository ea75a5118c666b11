"""The manifest of a backup (format 3, vmsnap.repo.manifest): the seal
(vmsnap.manifest) and the strict reader, on real backups of the test kit."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from backupkit import GUEST_UUID, edit_manifest, make_backup, manifest_doc, read_manifest

from vmsnap import manifest
from vmsnap.errors import ExitCode, IntegrityError, NotFoundError
from vmsnap.repo import manifest as rmanifest
from vmsnap.repo import refs
from vmsnap.repo.manifest import RepoManifest

MANIFEST = "manifest.json"


def load(folder: Path) -> RepoManifest:
    """The backup at ``folder`` read as every command reads it."""
    (ref,) = refs.locate(folder).refs()
    return ref.load()


Edit = Callable[[dict[str, Any]], None]


@pytest.fixture
def doc() -> dict[str, Any]:
    disk = {
        "target": "vda",
        "volume": "vg0/web01-root",
        "size": 1024,
        "chunk_sha256": "a" * 64,
        "new_bytes": 1024,
        "stored_bytes": 99,
        "snapshot": {"kind": "thin", "size": None},
        "chunks": ["b" * 64],
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
    script, path = hand_check_script(), str(backup / MANIFEST)
    run = subprocess.run([sys.executable, "-c", script, path], capture_output=True, check=True)
    assert run.stdout == b"True\n"
    edit_manifest(backup, lambda d: d["domain"].update(name="evil"))
    run = subprocess.run([sys.executable, "-c", script, path], capture_output=True, check=True)
    assert run.stdout == b"False\n"


# ---------------------------------------------------------------- load


def test_load_a_backup(backup: Path) -> None:
    found = load(backup)
    doc = read_manifest(backup)
    assert (found.kind, found.vmsnap_version, found.host) == ("guest", "0.1.0", "kvm1.example.org")
    assert found.guest is not None
    domain = found.guest.domain
    assert (domain.name, domain.uuid, domain.hypervisor) == ("web01", GUEST_UUID, "kvm")
    assert found.name == "web01"
    assert found.created == "2026-11-27T04:23:19Z"
    assert found.guest.quiesce == doc["quiesce"]
    assert found.guest.skipped == (("sda", "cdrom"),)
    assert [d.target for d in found.disks] == ["vda", "vdb"]
    vda, entry = found.disks[0], doc["disks"][0]
    assert (vda.volume, vda.size, vda.chunk_sha256) == (
        "vg0/vda",
        entry["size"],
        entry["chunk_sha256"],
    )
    assert vda.chunks == tuple(entry["chunks"])
    assert vda.snapshot == entry["snapshot"]
    assert (vda.new_bytes, vda.stored_bytes) == (entry["new_bytes"], entry["stored_bytes"])
    assert found.total_size == sum(d["size"] for d in doc["disks"])


def test_load_keeps_non_ascii_names(tmp_path: Path) -> None:
    folder = make_backup(tmp_path, guest="wéb 01/日本", disks={"vda": b"x" * 100})
    assert "\\u00e9" in (folder / MANIFEST).read_text()  # written escaped, as vmsnap does
    found = load(folder)
    assert found.guest is not None
    assert (found.name, found.guest.domain.name) == ("wéb 01/日本", "wéb 01/日本")


def test_missing_manifest_is_not_found(backup: Path) -> None:
    (backup / MANIFEST).unlink()
    with pytest.raises(NotFoundError, match=r"not a published backup \(no manifest\.json") as info:
        load(backup)
    assert info.value.exit_code == ExitCode.NOT_FOUND


def reject(folder: Path, match: str) -> IntegrityError:
    with pytest.raises(IntegrityError, match=match) as info:
        load(folder)
    error = info.value
    assert error.exit_code == ExitCode.INTEGRITY
    assert "\n" not in str(error)
    assert str(error).startswith(f"{folder / MANIFEST}: ")
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
    (backup / MANIFEST).write_bytes(text)
    reject(backup, match)


def test_load_refuses_a_huge_file(backup: Path) -> None:
    with (backup / MANIFEST).open("r+b") as f:
        f.truncate(manifest.MAX_BYTES + 1)
    reject(backup, "larger than")


def set_(key: str, value: object) -> Edit:
    return lambda d: d.update({key: value})


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        pytest.param(set_("format", "borg"), "format is 'borg', not 'vmsnap-backup'", id="format"),
        pytest.param(lambda d: d.pop("format"), "format is None", id="no-format"),
        pytest.param(set_("format_version", 4), "format_version 4 is not 3", id="version-4"),
        pytest.param(set_("format_version", 2), "format_version 2 is not 3", id="version-2"),
        pytest.param(set_("format_version", 0), "format_version 0", id="version-0"),
        pytest.param(set_("format_version", "3"), "format_version '3'", id="version-str"),
        pytest.param(set_("format_version", True), "format_version True", id="version-bool"),
        pytest.param(set_("format_version", 1.0), "format_version 1.0", id="version-float"),
        pytest.param(lambda d: d.pop("format_version"), "format_version None", id="no-version"),
    ],
)
def test_load_rejects_an_unknown_format(backup: Path, edit: Edit, match: str) -> None:
    edit_manifest(backup, edit, reseal=True)
    reject(backup, match)


def test_a_newer_version_gets_a_hint(backup: Path) -> None:
    edit_manifest(backup, set_("format_version", 4), reseal=True)
    assert reject(backup, "format_version").hint == "written by a newer vmsnap?"


def disk0(key: str, value: object) -> Edit:
    return lambda d: d["disks"][0].update({key: value})


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d["domain"].update(name="db01"), id="domain-name"),
        pytest.param(disk0("chunk_sha256", "0" * 64), id="chunk_sha256"),
        pytest.param(disk0("size", 1), id="size"),
        pytest.param(disk0("chunks", ["0" * 64]), id="chunks"),
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
    text = (backup / MANIFEST).read_text().replace('"web01"', '"\\ud800"')
    (backup / MANIFEST).write_text(text)
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
        pytest.param(set_("disks", []), "non-empty list of distinct targets", id="no-disks"),
        pytest.param(set_("disks", [1]), r"disks\[0\] must be an object", id="disk-int"),
        pytest.param(
            lambda d: d["disks"][1].pop("size"), r"disks\[1\].size is missing", id="size-missing"
        ),
        pytest.param(disk0("size", "1024"), r"disks\[0\].size must be an integer", id="size-str"),
        pytest.param(disk0("size", True), "must be an integer, not True", id="size-bool"),
        pytest.param(disk0("size", 1.5), "must be an integer, not 1.5", id="size-float"),
        pytest.param(disk0("size", -1), "must not be negative", id="size-negative"),
        pytest.param(disk0("new_bytes", None), "new_bytes must be", id="new-null"),
        pytest.param(disk0("chunk_sha256", "A" * 64), "does not match the list", id="sha-upper"),
        pytest.param(disk0("chunks", ["A" * 64]), "list of chunk ids", id="chunk-upper"),
        pytest.param(disk0("chunks", "ab"), "list of chunk ids", id="chunks-str"),
        pytest.param(disk0("chunks", []), "0 chunks for", id="chunks-short"),
        pytest.param(set_("kind", "tarball"), "kind 'tarball' is not one of", id="kind"),
        pytest.param(lambda d: d.pop("quiesce"), "quiesce is missing", id="no-quiesce"),
        pytest.param(lambda d: d["disks"][0].pop("volume"), "volume is missing", id="no-volume"),
        pytest.param(
            disk0("snapshot", {"kind": "qcow2", "size": None}),
            r"disks\[0\].snapshot.kind 'qcow2' is not thick or thin",
            id="snapshot-kind",
        ),
        pytest.param(
            disk0("snapshot", {"kind": "thin", "size": "4G"}),
            r"disks\[0\].snapshot.size must be an integer or null",
            id="snapshot-size",
        ),
        pytest.param(disk0("target", "vdb"), "distinct targets", id="same-target"),
        pytest.param(set_("skipped", [{"target": "sda"}]), r"skipped\[0\].reason", id="skipped"),
    ],
)
def test_load_rejects_missing_or_ill_typed_fields(backup: Path, edit: Edit, match: str) -> None:
    edit_manifest(backup, edit, reseal=True)
    reject(backup, match)


@pytest.mark.parametrize(
    "name", ["../../../../etc/passwd", "..", "", "/etc/passwd", "a/b", "a" * 63 + "/"]
)
def test_load_rejects_a_chunk_id_that_is_a_path(backup: Path, name: str) -> None:
    edit_manifest(backup, disk0("chunks", [name]), reseal=True)  # sealed again: the rules stop it
    reject(backup, "list of chunk ids")


def test_load_accepts_unknown_members_under_the_seal(backup: Path) -> None:
    edit_manifest(backup, set_("comment", "added by a later writer"), reseal=True)
    assert load(backup).name == "web01"


def test_a_manifest_that_is_a_folder_is_no_backup(backup: Path) -> None:
    (backup / MANIFEST).unlink()
    (backup / MANIFEST).mkdir()
    with pytest.raises(NotFoundError, match="not a published backup"):
        load(backup)


def test_load_does_not_mutate_what_it_returns(backup: Path) -> None:
    found = load(backup)
    assert found.guest is not None
    quiesce = copy.deepcopy(dict(found.guest.quiesce))
    again = load(backup)
    assert again.guest is not None
    assert again.guest.quiesce == quiesce


def test_what_the_writer_writes_the_reader_reads_back() -> None:
    """The one writer and the one reader of the format agree, member for member."""
    from vmsnap.models import QuiesceMode  # noqa: PLC0415 - the writer's inputs
    from vmsnap.quiesce import Window  # noqa: PLC0415

    window = Window(QuiesceMode.AUTO, "freeze", "running", 2, 0.41234, "")
    ids = ("b" * 64, "c" * 64)
    snap = {"kind": "thick", "size": 4 << 20, "peak_fill_percent": 12.5, "extended": 0}
    disks = (
        rmanifest.RepoDisk("vda", 5 << 20, rmanifest.volume_digest(ids), ids, 1 << 20, 99,
                           "vg0/root", snap),
        rmanifest.RepoDisk("vdb", 0, rmanifest.volume_digest(()), (), 0, 0, "vg0/data",
                           {"kind": "thin", "size": None, "peak_fill_percent": None,
                            "extended": 0}),
    )  # fmt: skip
    part = rmanifest.GuestPart(
        rmanifest.Domain("wéb01", GUEST_UUID, "kvm", "d" * 64),
        rmanifest.quiesce_doc(window),
        (("hdc", "cdrom"),),
    )
    m = rmanifest.new("wéb01", "guest", disks, 1795753399.7, guest=part, host="kvm1")
    data = rmanifest.to_bytes(m)
    got = rmanifest.parse(data, "here")
    assert got == dataclasses.replace(m, guest=got.guest)
    assert got.guest is not None
    assert (got.guest.domain, got.guest.skipped) == (part.domain, part.skipped)
    assert got.guest.quiesce["window_seconds"] == 0.412
    assert got.created == "2026-11-27T04:23:19Z"
    doc = json.loads(data)
    assert list(doc) == ["format", "format_version", "vmsnap_version", "host", "name", "kind",
                         "created", "domain", "quiesce", "disks", "skipped", "seal"]  # fmt: skip
    assert list(doc["disks"][0]) == ["target", "volume", "size", "chunk_sha256", "new_bytes",
                                     "stored_bytes", "snapshot", "chunks"]  # fmt: skip


def test_an_image_store_backup_has_no_guest_members() -> None:
    ids = ("b" * 64,)
    disk = rmanifest.RepoDisk("web01-root", 4096, rmanifest.volume_digest(ids), ids)
    doc = json.loads(rmanifest.to_bytes(rmanifest.new("web01-root", "image", (disk,))))
    assert "domain" not in doc
    assert "skipped" not in doc
    assert list(doc["disks"][0]) == ["target", "size", "chunk_sha256", "new_bytes",
                                     "stored_bytes", "chunks"]  # fmt: skip


def test_the_test_kit_writes_what_the_writer_writes() -> None:
    """backupkit's quiesce member is the writer's (tests stay honest)."""
    from vmsnap.models import QuiesceMode  # noqa: PLC0415
    from vmsnap.quiesce import Window  # noqa: PLC0415

    kit = manifest_doc("web01", [])["quiesce"]
    written = rmanifest.quiesce_doc(Window(QuiesceMode.AUTO, "freeze", "running", 2, 0.4, ""))
    assert list(kit) == list(written)
