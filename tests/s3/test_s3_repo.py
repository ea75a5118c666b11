"""vmsnap's own commands against a real object store (SeaweedFS on loopback):
a repository in a bucket, written, deduplicated, read back byte-exact,
verified and pruned; retried through our fault proxy; refused cleanly."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from faultproxy import FaultProxy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
from labkit import vmsnap

CHUNK = 4 << 20


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VMSNAP_LOCK_FILE", str(tmp_path / "vmsnap.lock"))
    monkeypatch.setenv("VMSNAP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VMSNAP_CACHE_DIR", str(tmp_path / "cache"))


def volume(path: Path, seed: int, chunks: int = 3) -> bytes:
    data = b"".join(
        hashlib.sha256(f"{seed}-{n}-{i}".encode()).digest() * (CHUNK // 32 // 4)
        + bytes(CHUNK - CHUNK // 4)
        for n in range(chunks)
        for i in range(1)
    )
    path.write_bytes(data)
    return data


def test_a_repository_in_a_bucket_end_to_end(
    bucket: str, s3env: dict[str, str], tmp_path: Path
) -> None:
    dest = f"s3://{bucket}/fleet"
    assert vmsnap("init", "--dest", dest).returncode == 0
    again = vmsnap("init", "--dest", dest)
    assert again.returncode == 14, again.stderr
    data = volume(tmp_path / "disk.raw", 1)
    first = vmsnap("image", "store", str(tmp_path / "disk.raw"), "--dest", dest, "--name",
                   "tpl", "--json")  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = vmsnap("image", "store", str(tmp_path / "disk.raw"), "--dest", dest, "--name",
                    "clone", "--json")  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["new_chunks"] == 0  # deduplicated across names
    out = tmp_path / "back.img"
    exported = vmsnap("export", "--dest", dest, "clone", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    raw = tmp_path / "back.raw"
    loaded = vmsnap("image", "load", str(out), str(raw))
    assert loaded.returncode == 0, loaded.stderr
    assert raw.read_bytes() == data
    verified = vmsnap("verify", "--dest", dest, "--read-data")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    listed = vmsnap("backups", "--dest", dest, "--json")
    assert listed.returncode == 0, listed.stderr
    pruned = vmsnap("prune", "--dest", dest, "--keep-last", "1")
    assert pruned.returncode == 0, pruned.stderr


def test_throttling_and_500s_are_retried(
    bucket: str, s3env: dict[str, str], proxy: FaultProxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    dest = f"s3://{bucket}"
    assert vmsnap("init", "--dest", dest).returncode == 0
    proxy.inject("503", times=2, method="PUT", path_re="/chunks/")
    proxy.inject("500", times=1, method="PUT", path_re="/chunks/")
    data = volume(tmp_path / "disk.raw", 2)
    stored = vmsnap("image", "store", str(tmp_path / "disk.raw"), "--dest", dest, "--name", "d")
    assert stored.returncode == 0, stored.stderr
    assert sum(proxy.injected.values()) == 3
    out = tmp_path / "d.img"
    assert vmsnap("export", "--dest", dest, "d", "-o", str(out)).returncode == 0
    assert vmsnap("image", "load", str(out), str(tmp_path / "d.raw")).returncode == 0
    assert (tmp_path / "d.raw").read_bytes() == data


def test_wrong_credentials_and_a_missing_bucket_are_one_line_each(
    bucket: str, s3env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = vmsnap("backups", "--dest", f"s3://{bucket}-gone")
    assert missing.returncode == 9, missing.stderr
    assert "does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    denied = vmsnap("backups", "--dest", f"s3://{bucket}")
    assert denied.returncode == 18, denied.stderr
    assert len(denied.stderr.strip().splitlines()) == 1


def test_an_empty_bucket_is_not_a_repository(bucket: str, s3env: dict[str, str]) -> None:
    run = vmsnap("verify", "--dest", f"s3://{bucket}")
    assert run.returncode == 15, run.stderr
    assert "vmsnap init --dest" in run.stderr
