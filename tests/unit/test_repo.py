"""The chunk repository's modules on real files: the local backend, object
names, the strict format 3 manifest reader, the chunk index, and the path
restore will take (the reader's frames through vmsnap.image.decompress)."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backupkit import random_bytes
from unitkit import chunk_sha256

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
from labkit import stopped

from vmsnap import image
from vmsnap import manifest as sealed
from vmsnap.digest import CHUNK
from vmsnap.errors import IntegrityError, NotARepositoryError
from vmsnap.repo import layout, reader
from vmsnap.repo import manifest as rmanifest
from vmsnap.repo.backend import LocalBackend, ObjectMissing
from vmsnap.repo.check import check
from vmsnap.repo.gc import collect
from vmsnap.repo.index import open_index
from vmsnap.repo.jobs import publish
from vmsnap.repo.repository import Repository, init_local, open_local
from vmsnap.repo.writer import store_volume

ID = "ab" + "0" * 62


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VMSNAP_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return init_local(tmp_path / "repo")


# ---------------------------------------------------------------- backend, names


def test_local_backend_objects(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.put("a/b/c", b"one")
    backend.put("a/b/c", b"two")  # atomic replace
    backend.put("a/d", b"")
    assert backend.get("a/b/c") == b"two"
    assert backend.exists("a/d")
    assert not backend.exists("a/x")
    (tmp_path / "a" / ".c.1234.tmp").write_bytes(b"half")  # a writer killed mid-put
    assert sorted(x[:2] for x in backend.list("a/")) == [("a/b/c", 3), ("a/d", 0)]
    assert [x.name for x in backend.list("a/b/")] == ["a/b/c"]
    assert list(backend.list("none/")) == []
    assert stat.S_IMODE((tmp_path / "a" / "b" / "c").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    backend.delete("a/d")
    backend.delete("a/d")  # gone already: fine
    with pytest.raises(ObjectMissing):
        backend.get("a/d")


@pytest.mark.parametrize("name", ["../x", "a/../b", "/abs", "a//b", ".hidden", "a/.tmp", ""])
def test_object_names_cannot_climb_or_hide(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not an object name"):
        LocalBackend(tmp_path).put(name, b"x")


def test_chunk_names() -> None:
    name = layout.chunk_name(ID)
    assert name == f"chunks/ab/{ID}.zst"
    assert layout.chunk_of(name) == ID
    assert layout.chunk_of(f"chunks/cd/{ID}.zst") is None  # in the wrong folder
    assert layout.chunk_of("chunks/ab/x.zst") is None
    for bad in ("../../etc/passwd", ID.upper(), ID[:-1]):
        with pytest.raises(IntegrityError):
            layout.chunk_name(bad)


def test_open_refuses_what_is_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "config").write_text('{"format": "something else"}')
    with pytest.raises(NotARepositoryError, match="not a vmsnap repository config"):
        open_local(tmp_path)
    (tmp_path / "config").write_bytes(b"\xff")
    with pytest.raises(NotARepositoryError):
        open_local(tmp_path)


# ---------------------------------------------------------------- manifest


def manifest_bytes(**disk: object) -> bytes:
    chunks = (ID, "cd" + "1" * 62)
    base = rmanifest.RepoDisk("vda", CHUNK + 5, rmanifest.volume_digest(chunks), chunks)
    m = rmanifest.new("web01", "image", (base,))
    doc = json.loads(rmanifest.to_bytes(m))
    doc["disks"][0].update(disk)
    return json.dumps(sealed.seal(doc)).encode()


def test_manifest_round_trip() -> None:
    m = rmanifest.parse(manifest_bytes(), "m")
    assert (m.name, m.kind, m.disk(None).target, m.disk("vda").size) == (
        "web01",
        "image",
        "vda",
        CHUNK + 5,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chunks": [ID]}, "1 chunks for"),
        ({"size": 2 * CHUNK + 1}, "chunks for"),
        ({"chunk_sha256": "0" * 64}, "does not match the list"),
        ({"chunks": [ID, "../x"]}, "chunk ids"),
        ({"chunks": "not a list"}, "chunk ids"),
        ({"target": ""}, "empty"),
        ({"size": -1}, "negative"),
    ],
)
def test_manifest_reader_refuses(change: dict[str, object], message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        rmanifest.parse(manifest_bytes(**change), "m")


def test_manifest_reader_refuses_an_edit_and_another_version() -> None:
    doc = json.loads(manifest_bytes())
    edited = {**doc, "name": "other"}
    with pytest.raises(IntegrityError, match="seal"):
        rmanifest.parse(json.dumps(edited).encode(), "m")
    newer = sealed.seal({**doc, "format_version": 4})
    with pytest.raises(IntegrityError, match="format_version 4"):
        rmanifest.parse(json.dumps(newer).encode(), "m")


# ---------------------------------------------------------------- writer, reader, index


def test_store_from_a_pipe_and_decode_through_the_image_engine(
    repo: Repository, tmp_path: Path
) -> None:
    data = random_bytes(CHUNK + 1000) + bytes(2 * CHUNK) + b"end"
    with open_index(repo) as index:
        disk, counts = store_volume(repo, index, io.BytesIO(data), target="vda", size=len(data))
    assert disk.chunk_sha256 == chunk_sha256(data)
    assert (counts.read, counts.chunks) == (len(data), 4)
    out = tmp_path / "restored.raw"
    with out.open("wb") as sink:  # what restore and clone will do
        stream = reader.StreamReader(reader.image_stream(repo, disk, where="b"))
        stats = image.decompress(
            stream, sink, expected_size=disk.size, expected_digest=disk.chunk_sha256
        )
    assert stats.size == len(data)
    assert out.read_bytes() == data


def test_the_index_lives_in_memory_without_a_cache_folder(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("VMSNAP_CACHE_DIR", str(blocker))
    data = random_bytes(1000)
    with open_index(repo) as index:
        store_volume(repo, index, io.BytesIO(data), target="x")
    with open_index(repo) as index:  # rebuilt from the listing
        assert len(index) == 1
        _disk, counts = store_volume(repo, index, io.BytesIO(data), target="x")
    assert counts.new_chunks == 0


# ---------------------------------------------------------------- check (for verify)


def stored_backups(repo: Repository) -> tuple[list[str], list[str]]:
    """Two backups sharing their first chunk: (manifest names, chunk ids)."""
    shared = random_bytes(CHUNK, 1)
    names, ids = [], []
    for n in (2, 3):
        with open_index(repo) as index:
            src = io.BytesIO(shared + random_bytes(CHUNK, n))
            disk, _counts = store_volume(repo, index, src, target="vda")
        names.append(publish(repo, rmanifest.new(f"guest{n}", "image", (disk,))))
        ids += [c for c in disk.chunks if c not in ids]
    return names, ids


def test_check_finds_every_chunk_good(repo: Repository) -> None:
    names, ids = stored_backups(repo)
    report = check(repo, names, read_data=True)
    assert report.ok
    assert (report.chunks, report.decoded) == (len(ids), 3)
    assert check(repo, names, read_data=False, sample=1).decoded == 1
    assert check(repo, names, read_data=False).decoded == 0


def test_check_names_every_backup_that_uses_a_bad_chunk(repo: Repository) -> None:
    names, ids = stored_backups(repo)
    shared, own = (repo_path(repo) / layout.chunk_name(c) for c in ids[:2])
    shared.unlink()
    raw = bytearray(own.read_bytes())
    raw[100] ^= 1
    own.write_bytes(bytes(raw))
    quick = check(repo, names, read_data=False)
    assert [(b.chunk_id, b.problem, b.backups) for b in quick.bad] == [
        (ids[0], "missing", tuple(names))
    ]
    full = check(repo, names, read_data=True)
    assert {b.chunk_id: b.backups for b in full.bad} == {ids[0]: tuple(names), ids[1]: (names[0],)}
    assert "corrupt" in next(b.problem for b in full.bad if b.chunk_id == ids[1])


def test_check_reports_a_manifest_it_cannot_read(repo: Repository) -> None:
    names, _ids = stored_backups(repo)
    (repo_path(repo) / names[0]).write_text("{}")
    report = check(repo, [*names, "backups/x/y/manifest.json"], read_data=False)
    assert report.backups == (names[1],)
    assert [n for n, _e in report.bad_manifests] == [names[0], "backups/x/y/manifest.json"]
    assert not report.ok


def repo_path(repo: Repository) -> Path:
    return Path(repo.location)


# ---------------------------------------------------------------- garbage collection (for prune)


def all_manifests(repo: Repository) -> list[str]:
    return sorted(n for n, _s in repo.backend.list("backups/") if n.endswith("manifest.json"))


def test_gc_frees_only_what_no_manifest_names(repo: Repository, tmp_path: Path) -> None:
    names, ids = stored_backups(repo)
    repo.backend.delete(names[0])  # what prune does first
    unique = repo_path(repo) / layout.chunk_name(ids[1])
    dry = collect(repo, dry_run=True)
    assert (dry.manifests, dry.chunks, dry.garbage) == (1, 3, 1)
    assert dry.garbage_bytes == unique.stat().st_size
    assert unique.exists()
    epoch = repo.epoch()
    done = collect(repo, dry_run=False)
    assert done.garbage == 1
    assert not unique.exists()
    assert repo.epoch() != epoch  # every host's index is now stale
    assert check(repo, names[1:], read_data=True).ok
    assert collect(repo, dry_run=False).garbage == 0


def test_gc_deletes_nothing_while_a_manifest_is_unreadable(repo: Repository) -> None:
    names, _ids = stored_backups(repo)
    repo.backend.delete(names[0])
    (repo_path(repo) / names[1]).write_text("{}")
    with pytest.raises(IntegrityError, match="before deleting anything"):
        collect(repo, dry_run=False)
    assert len(list(repo.backend.list("chunks/"))) == 3


def test_gc_killed_half_way_loses_nothing_a_manifest_needs(repo: Repository) -> None:
    names, _ids = stored_backups(repo)
    for n in range(4):  # garbage: four chunks that nothing names
        with open_index(repo) as index:
            store_volume(repo, index, io.BytesIO(random_bytes(CHUNK, 100 + n)), target="x")
    script = "import sys; from pathlib import Path; from vmsnap.repo import gc, repository; "
    script += "gc.collect(repository.open_local(Path(sys.argv[1])), dry_run=False)"
    env = dict(os.environ, VMSNAP_FAILPOINT="collecting")
    proc = subprocess.Popen([sys.executable, "-c", script, repo.location], env=env)
    stopped(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = len(list(repo.backend.list("chunks/")))
    assert 3 <= left < 7  # killed after its first delete
    assert check(repo, names, read_data=True).ok
    assert collect(repo, dry_run=False).garbage == left - 3
    assert check(repo, names, read_data=True).ok


def test_gc_removes_old_temporaries_of_killed_writers(repo: Repository) -> None:
    stored_backups(repo)
    folder = next((repo_path(repo) / "chunks").iterdir())
    old, new = folder / ".x.zst.1.tmp", folder / ".y.zst.2.tmp"
    old.write_bytes(b"half")
    new.write_bytes(b"being written")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    assert collect(repo, dry_run=False).temporaries == 1
    assert not old.exists()
    assert new.exists()
