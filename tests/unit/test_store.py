"""store.py: harmless path components, time stamps, and private new files."""

from __future__ import annotations

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


# ---------------------------------------------------------------- files

STAMP = "20231114T221320Z"


def test_write_file_is_private_and_never_reuses_a_name(tmp_path: Path) -> None:
    path = tmp_path / "domain.xml"
    store.write_file(path, b"<domain/>")
    assert mode(path) == 0o600
    assert path.read_bytes() == b"<domain/>"
    with pytest.raises(DestinationError, match="cannot create"):
        store.write_file(path, b"again")
    assert path.read_bytes() == b"<domain/>"

    target = tmp_path / "target"
    link = tmp_path / "link.xml"
    link.symlink_to(target)
    with pytest.raises(DestinationError) as info:
        store.write_file(link, b"<domain/>")
    assert info.value.exit_code == ExitCode.DESTINATION
    assert not target.exists()


def test_is_stamp() -> None:
    assert store.is_stamp(STAMP)
    assert store.is_stamp(f"{STAMP}-2")
    assert not store.is_stamp(f"{STAMP}.partial")
    assert not store.is_stamp("20231114")
