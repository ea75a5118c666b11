"""Repository locks and the object-store errors that need no store.

Locks on a real local repository (the protocol is the same in a bucket):
a collection never runs while another run holds a shared lock, a killed
run's lock on this host does not block, a stale one is ignored.  The S3
errors here are real boto3 behaviour: an endpoint on a closed loopback port
(19) and no credentials at all (18), each one line.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from clikit import Main, one_line_error
from test_cli_prune import STAMPS, backups, present

from vmsnap.errors import ExitCode, LockedError
from vmsnap.repo import locks
from vmsnap.repo.location import S3Url, parse
from vmsnap.repo.repository import open_local


def chunk_count(dest: Path) -> int:
    return len(list((dest / "chunks").rglob("*.zst")))


def test_prune_while_another_run_holds_a_shared_lock_keeps_every_chunk(
    main: Main, dest: Path
) -> None:
    backups(dest)
    repo = open_local(dest)
    with locks.repo_lock(repo, locks.SHARED, command="backup"):
        code, _out, err = main("prune", "--dest", str(dest), "--keep-last", "1")
        assert code == ExitCode.LOCKED
        assert "garbage collection skipped" in err
        assert "in use by backup on" in err
        assert present(dest) == STAMPS[3:]  # the policy's part is done
        assert chunk_count(dest) == 4  # nothing collected under the running backup
    code, out, _err = main("prune", "--dest", str(dest), "--keep-last", "1")
    assert code == 0, out
    assert "freed 3 of 4 chunk(s)" in out
    assert not list((dest / "locks").iterdir())  # every lock released


def test_a_collection_makes_a_shared_lock_wait_then_refuse(dest: Path) -> None:
    repo = open_local(dest)
    with (
        locks.repo_lock(repo, locks.EXCLUSIVE, command="prune"),
        pytest.raises(LockedError, match="in use by prune"),
        locks.repo_lock(repo, locks.SHARED, command="backup", wait=0),
    ):
        pass
    with locks.repo_lock(repo, locks.SHARED, command="backup"):
        with locks.repo_lock(repo, locks.SHARED, command="backup"):
            pass  # shared locks do not conflict


def _plant(dest: Path, doc: dict[str, object], age: float = 0) -> Path:
    folder = dest / "locks"
    folder.mkdir(exist_ok=True)
    path = folder / ("f" * 32)
    path.write_text(json.dumps(doc))
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def test_a_dead_runs_lock_on_this_host_does_not_block(main: Main, dest: Path) -> None:
    backups(dest)
    planted = _plant(
        dest,
        {"format": "vmsnap-lock", "kind": "shared", "host": socket.gethostname(),
         "pid": 2**22 + 7, "command": "backup", "created": "2026-12-02T01:00:00Z"},
    )  # fmt: skip
    code, out, err = main("prune", "--dest", str(dest), "--keep-last", "1")
    assert code == 0, err
    assert "freed 3 of 4 chunk(s)" in out
    assert not planted.exists()


def test_a_stale_lock_of_another_host_is_ignored_and_removed(main: Main, dest: Path) -> None:
    backups(dest)
    planted = _plant(
        dest,
        {"format": "vmsnap-lock", "kind": "shared", "host": "elsewhere.example",
         "pid": 1, "command": "backup", "created": "2026-12-01T01:00:00Z"},
        age=3600,
    )  # fmt: skip
    code, out, err = main("prune", "--dest", str(dest), "--keep-last", "1")
    assert code == 0, err
    assert "freed 3 of 4 chunk(s)" in out
    assert not planted.exists()


def test_a_live_lock_of_another_host_blocks_the_collection(main: Main, dest: Path) -> None:
    backups(dest)
    _plant(
        dest,
        {"format": "vmsnap-lock", "kind": "shared", "host": "elsewhere.example",
         "pid": 1, "command": "backup", "created": "2026-12-02T01:00:00Z"},
    )  # fmt: skip
    code, _out, err = main("prune", "--dest", str(dest), "--keep-last", "1")
    assert code == 11
    assert "backup on elsewhere.example" in err
    assert chunk_count(dest) == 4


# ---------------------------------------------------------------- s3:// without a store


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS settings of this host's: empty files, no instance metadata."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        path = tmp_path / name.lower()
        path.write_text("")
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard: nobody listens


def test_an_object_store_that_does_not_answer_exits_19(
    main: Main, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "vmsnaptest")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "vmsnaptest")
    code, _out, err = main("backups", "--dest", "s3://fleet-backups/hosts")
    assert code == 19
    line = one_line_error(err)
    assert "s3://fleet-backups/hosts" in line
    assert "did not answer" in line


def test_no_credentials_for_the_object_store_exits_18(main: Main, aws: None) -> None:
    code, _out, err = main("verify", "--dest", "s3://fleet-backups")
    assert code == ExitCode.ACCESS_DENIED
    assert "no credentials" in one_line_error(err)


@pytest.mark.parametrize(
    ("text", "bucket", "prefix"),
    [("s3://b00/", "b00", ""), ("s3://my.bucket/a/b/", "my.bucket", "a/b/"),
     ("s3://bkt/fleet", "bkt", "fleet/")],
)  # fmt: skip
def test_s3_urls(text: str, bucket: str, prefix: str) -> None:
    url = parse(text)
    assert isinstance(url, S3Url)
    assert (url.bucket, url.prefix) == (bucket, prefix)


@pytest.mark.parametrize("text", ["s3://B/x", "s3://ab", "s3://bkt/a//b", "s3://bkt/.x"])
def test_bad_s3_urls_are_usage_errors(main: Main, text: str) -> None:
    code, _out, err = main("backups", "--dest", text)
    assert code == 2
    one_line_error(err)
