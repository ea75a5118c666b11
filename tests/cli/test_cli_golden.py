"""Golden files: every ``--json`` document and every ``--help`` text the CLI
prints, compared byte for byte with tests/cli/golden/ (times and paths
normalised).  The documents are a public contract: a change here is a change
scripts see.  Regenerate on purpose with ``VMSNAP_GOLDEN_UPDATE=1``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from clikit import Main
from goldenkit import (
    CHECKPOINT,
    CLEANUP_REPORT,
    CLEANUP_UNRESOLVED,
    CLONE_RESULT,
    GUEST_RESULTS,
    LVS_REPORT,
    RESTORE_RESULT,
)
from test_cli_manpage import COMMANDS

from vmsnap import backup, checkpoint, cleanup, clone, lvm, restore
from vmsnap.cli import jsondoc
from vmsnap.image import StreamStats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from backupkit import chunk_path, flip_bit, make_backup, random_bytes

GOLDEN = Path(__file__).resolve().parent / "golden"
TIME_KEYS = frozenset({"age_seconds", "at", "newest_good_age_seconds"})


def normalised(value: Any, tmp: str, keys: frozenset[str] = TIME_KEYS) -> Any:
    """Paths under the test's folder become <TMP>, the values of ``keys``
    (wall-clock times, random UUIDs) <TIME>."""
    if isinstance(value, dict):
        return {
            k: ("<TIME>" if k in keys and v is not None else normalised(v, tmp, keys))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalised(v, tmp, keys) for v in value]
    if isinstance(value, str):
        return value.replace(tmp, "<TMP>")
    return value


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("VMSNAP_GOLDEN_UPDATE"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.read_text() == text, f"{name} differs from its golden file"


def check_json(name: str, out: str, tmp_path: Path, keys: frozenset[str] = TIME_KEYS) -> None:
    doc = normalised(json.loads(out), str(tmp_path), keys)
    check(f"{name}.json", json.dumps(doc, indent=2) + "\n")


@pytest.fixture
def stored(dest: Path) -> Path:
    """Two good backups of web01 (the same bytes: one chunk) and one that
    fails verify (web02: its chunk has a flipped bit)."""
    for stamp in ("20261101T020000Z", "20261102T020000Z"):
        make_backup(dest, "web01", stamp, disks={"vda": random_bytes(5000)})
    bad = make_backup(dest, "web02", "20261102T020000Z", disks={"vda": random_bytes(6000, 1)})
    flip_bit(chunk_path(dest, bad), 20)
    return dest


@pytest.fixture
def policy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vmsnap.toml"
    path.write_text("[retention]\nkeep_last = 1\n")
    monkeypatch.setenv("VMSNAP_CONFIG", str(path))


def test_list_json(main: Main, uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(lvm, "list_volumes", lambda *a, **k: lvm.parse_lvs(LVS_REPORT))
    code, out, err = main("list", "--connect", uri, "--json")
    assert code == 0, err
    check_json("list", out, tmp_path, TIME_KEYS | {"uuid"})  # the test driver makes them up


@pytest.mark.usefixtures("policy_file")
def test_backup_json(
    main: Main, uri: str, stored: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(backup, "backup", lambda *_a: GUEST_RESULTS(stored))
    code, out, _err = main("backup", "--all", "--prune", "--json", "-c", uri, "--dest", str(stored))
    assert code == 1
    check_json("backup", out, tmp_path)


def test_cleanup_json(main: Main, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cleanup, "cleanup", lambda **_k: CLEANUP_REPORT())
    code, out, _err = main("cleanup", "--json")
    assert code == 0
    check_json("cleanup", out, tmp_path)


def test_cleanup_json_with_a_guest_it_could_not_release(
    main: Main, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cleanup, "cleanup", lambda **_k: CLEANUP_UNRESOLVED())
    code, out, _err = main("cleanup", "--json")
    assert code == 12
    check_json("cleanup-unresolved", out, tmp_path)


def test_every_result_type_renders_as_json(tmp_path: Path) -> None:
    """Each jsondoc function, on a fully-populated value: json.dumps takes all."""
    [ok, failed] = GUEST_RESULTS(tmp_path)
    docs = [
        jsondoc.backup_result(ok, None, 0.0),
        jsondoc.backup_result(failed, None, 0.0),
        jsondoc.cleanup_report(CLEANUP_UNRESOLVED(), dry_run=True),
        jsondoc.restore_result(RESTORE_RESULT),
        jsondoc.clone_result(CLONE_RESULT, tmp_path / "web09.xml"),
        jsondoc.stream_stats(StreamStats(size=1, chunk_sha256="ab" * 32, compressed_size=2)),
        jsondoc.checkpoint(CHECKPOINT, 0.0),
    ]
    for doc in docs:
        assert json.loads(json.dumps(doc)) == doc


def test_verify_json(main: Main, stored: Path, tmp_path: Path) -> None:
    code, out, _err = main("verify", "--no-progress", "--json", str(stored))
    assert code == 10
    check_json("verify", out, tmp_path)


def test_prune_json(main: Main, stored: Path, tmp_path: Path) -> None:
    main("verify", "--no-progress", str(stored / "backups" / "web02"))
    code, out, _err = main(
        "prune", "--dest", str(stored), "--keep-last", "1", "--dry-run", "--json"
    )
    assert code == 0
    check_json("prune", out, tmp_path)


def test_backups_json(main: Main, stored: Path, tmp_path: Path) -> None:
    main("verify", "--no-progress", str(stored))
    code, out, _err = main("backups", "--dest", str(stored), "--json")
    assert code == 0
    check_json("backups", out, tmp_path)


def test_restore_json(main: Main, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(restore, "restore", lambda *_a: RESTORE_RESULT)
    code, out, _err = main("restore", str(tmp_path), "--vg", "vg0", "--json")
    assert code == 0
    check_json("restore", out, tmp_path)


@pytest.mark.parametrize("no_define", [False, True])
def test_clone_json(
    main: Main, uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_define: bool
) -> None:
    monkeypatch.setattr(clone, "clone", lambda *_a: CLONE_RESULT)
    monkeypatch.chdir(tmp_path)
    extra = ["--no-define", "--xml", "web09.xml"] if no_define else []
    code, out, _err = main("clone", "web01", "web09", *extra, "-c", uri, "--json")
    assert code == 0
    check_json("clone-no-define" if no_define else "clone", out, tmp_path)


def test_image_json(main: Main, tmp_path: Path) -> None:
    src = tmp_path / "src.raw"
    src.write_bytes(random_bytes(70000, 3))
    img = tmp_path / "src.img.zst"
    code, out, _err = main("image", "dump", "--no-progress", "--json", str(src), str(img))
    assert code == 0
    check_json("image-dump", out, tmp_path)
    code, out, _err = main(
        "image", "load", "--no-progress", "--json", str(img), str(tmp_path / "n")
    )
    assert code == 0
    check_json("image-load", out, tmp_path)


def test_repository_json(main: Main, tmp_path: Path) -> None:
    repo, src = tmp_path / "repo", tmp_path / "src.raw"
    src.write_bytes(random_bytes(70000, 3))
    keys = TIME_KEYS | {"id", "created", "manifest"}
    code, out, _err = main("init", "--dest", str(repo), "--json")
    assert code == 0
    check_json("init", out, tmp_path, keys)
    store = ["image", "store", str(src), "--dest", str(repo), "--name", "src", "--no-progress"]
    code, out, _err = main(*store, "--json")
    assert code == 0
    check_json("image-store", out, tmp_path, keys)
    export = ["export", "--dest", str(repo), "src", "-o", str(tmp_path / "x"), "--no-progress"]
    code, out, _err = main(*export, "--json")
    assert code == 0
    check_json("export", out, tmp_path, keys)


def test_checkpoint_json(
    main: Main, uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(checkpoint, "create", lambda *_a: CHECKPOINT)
    monkeypatch.setattr(checkpoint, "checkpoints", lambda *_a: [CHECKPOINT])
    code, out, _err = main("checkpoint", "create", "web01", "-c", uri, "--json")
    assert code == 0
    check_json("checkpoint-create", out, tmp_path)
    code, out, _err = main("checkpoint", "list", "--json")
    assert code == 0
    check_json("checkpoint-list", out, tmp_path)


HELPS = [[], ["image"], ["checkpoint"], *([*name.split()] for name, _cmd in COMMANDS)]


@pytest.mark.parametrize("command", HELPS, ids=[" ".join(c) or "vmsnap" for c in HELPS])
def test_help(main: Main, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _err = main(*command, "--help")
    assert code == 0
    check(f"help-{'-'.join(command) or 'vmsnap'}.txt", out)
