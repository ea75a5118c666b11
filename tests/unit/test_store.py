"""store.py: harmless path components, time stamps, and the staging folder
that becomes a backup only when complete."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from urllib.parse import unquote

import pytest

from vmsnap import store
from vmsnap.errors import DestinationError, ExitCode

TRICKY_NAMES = [
    "web01",
    "db-01",
    "a/b",
    "../../etc",
    "/abs",
    ".",
    "..",
    "...",
    ".hidden",
    "-rf",
    "--",
    "-",
    "a b",
    "50%",
    "%2F",
    "%",
    "ünïcödé",
    "日本",
    "tab\there",
    "new\nline",
    "back\\slash",
    "colon:x",
    "~tilde",
    "a.b",
    "x" * 200,
    "\x7f",
    "q?&=#",
]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_safe_component_is_one_harmless_reversible_component(name: str) -> None:
    text = store.safe_component(name)
    assert text
    assert "/" not in text
    assert "\0" not in text
    assert text not in (".", "..")
    assert not text.startswith(("-", "."))
    assert text.isprintable()
    assert unquote(text) == name


def test_safe_component_leaves_ordinary_names_alone() -> None:
    assert store.safe_component("web01") == "web01"
    assert store.safe_component("db-01_a+b,c=d@e") == "db-01_a+b,c=d@e"
    assert store.safe_component("xvda") == "xvda"


def test_safe_component_of_distinct_names_differ() -> None:
    seen = [store.safe_component(n) for n in TRICKY_NAMES]
    assert len(set(seen)) == len(seen)


def test_timestamp() -> None:
    assert store.timestamp(0) == "19700101T000000Z"
    assert store.timestamp(1700000000) == "20231114T221320Z"
    assert store.timestamp(1700000000.999) == "20231114T221320Z"
    assert re.fullmatch(r"\d{8}T\d{6}Z", store.timestamp())


# ---------------------------------------------------------------- destination


def test_check_destination_accepts_a_directory(tmp_path: Path) -> None:
    store.check_destination(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    store.check_destination(link)


def test_check_destination_missing(tmp_path: Path) -> None:
    with pytest.raises(DestinationError, match="does not exist") as info:
        store.check_destination(tmp_path / "nosuch")
    assert info.value.exit_code == ExitCode.DESTINATION


def test_check_destination_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(DestinationError, match="does not exist"):
        store.check_destination(link)


def test_check_destination_not_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(DestinationError, match="not a directory"):
        store.check_destination(file)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_destination_unwritable(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(DestinationError, match="not writable"):
        store.check_destination(ro)


# ---------------------------------------------------------------- staging and publishing

STAMP = "20231114T221320Z"


def test_create_staging_makes_private_folders(tmp_path: Path) -> None:
    staging = store.create_staging(tmp_path, "../web 01", STAMP)
    assert staging == tmp_path / "%2E.%2Fweb%2001" / f"{STAMP}.partial"  # did not climb out
    assert unquote(staging.parent.name) == "../web 01"
    assert staging.name == f"{STAMP}{store.PARTIAL_SUFFIX}"
    assert mode(staging) == 0o700
    assert mode(staging.parent) == 0o700


def test_create_staging_refuses_a_guest_folder_that_is_a_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "web01").symlink_to(elsewhere)
    with pytest.raises(DestinationError, match="not a directory"):
        store.create_staging(dest, "web01", STAMP)
    assert list(elsewhere.iterdir()) == []


def test_create_staging_refuses_a_guest_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "web01").write_text("x")
    with pytest.raises(DestinationError):
        store.create_staging(tmp_path, "web01", STAMP)


def test_create_staging_in_a_missing_destination(tmp_path: Path) -> None:
    with pytest.raises(DestinationError, match="cannot create"):
        store.create_staging(tmp_path / "nosuch", "web01", STAMP)


def test_write_file_is_private_and_never_reuses_a_name(tmp_path: Path) -> None:
    staging = store.create_staging(tmp_path, "web01", STAMP)
    path = staging / "manifest.json"
    store.write_json(path, {"format": "vmsnap-backup", "n": 1})
    assert mode(path) == 0o600
    assert path.read_text() == '{\n  "format": "vmsnap-backup",\n  "n": 1\n}\n'
    with pytest.raises(DestinationError, match="cannot create"):
        store.write_file(path, b"again")
    assert path.read_text().startswith("{")

    target = tmp_path / "target"
    link = staging / "domain.xml"
    link.symlink_to(target)
    with pytest.raises(DestinationError):
        store.write_file(link, b"<domain/>")
    assert not target.exists()


def test_publish_renames_into_place(tmp_path: Path) -> None:
    staging = store.create_staging(tmp_path, "web01", STAMP)
    store.write_file(staging / "xvda.img.zst", b"data")
    final = store.publish(staging)
    assert final == tmp_path / "web01" / STAMP
    assert not staging.exists()
    assert (final / "xvda.img.zst").read_bytes() == b"data"
    assert mode(final) == 0o700
    assert mode(final / "xvda.img.zst") == 0o600


def test_publish_never_overwrites_an_earlier_backup(tmp_path: Path) -> None:
    first = store.publish(store.create_staging(tmp_path, "web01", STAMP))
    second = store.publish(store.create_staging(tmp_path, "web01", STAMP))
    third = store.publish(store.create_staging(tmp_path, "web01", STAMP))
    assert [first.name, second.name, third.name] == [STAMP, f"{STAMP}-2", f"{STAMP}-3"]
    assert all(p.is_dir() for p in (first, second, third))


def test_remove_partials(tmp_path: Path) -> None:
    dead = store.create_staging(tmp_path, "web01", "20200101T000000Z")
    store.write_file(dead / "xvda.img.zst", b"half")
    (dead / "sub").mkdir()
    done = store.publish(store.create_staging(tmp_path, "web01", STAMP))
    other = store.create_staging(tmp_path, "db01", "20200101T000000Z")

    gone = store.remove_partials(store.guest_dir(tmp_path, "web01"))
    assert gone == [dead]
    assert not dead.exists()
    assert done.is_dir()
    assert other.is_dir()  # another guest's folder is not touched
    assert store.remove_partials(store.guest_dir(tmp_path, "web01")) == []
    assert store.remove_partials(tmp_path / "nosuch") == []


def test_discard(tmp_path: Path) -> None:
    staging = store.create_staging(tmp_path, "web01", STAMP)
    store.write_file(staging / "x", b"x")
    store.discard(staging)
    assert not staging.exists()
    assert store.guest_dir(tmp_path, "web01").is_dir()
