"""Fixtures for the CLI tests: a libvirt test-driver node, a private lock
file, and in-process runs of ``vmsnap.cli.main`` that leave no global state
(signal handlers, logging, excepthook) behind."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import NODE_XML, Main

from vmsnap import cli, lvm
from vmsnap.errors import LvmError
from vmsnap.repo.repository import init_local

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
from labkit import isolated_run


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("VMSNAP_LOCK_FILE", str(tmp_path / "vmsnap.lock"))
    monkeypatch.setenv("VMSNAP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VMSNAP_CACHE_DIR", str(tmp_path / "cache"))  # the chunk index
    monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)
    with isolated_run():  # signal handlers, excepthook, logging and the gate put back
        yield


@pytest.fixture
def uri(tmp_path: Path) -> str:
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    return f"test://{node}"


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """A repository, as ``vmsnap init --dest`` makes it."""
    path = tmp_path / "dest"
    init_local(path)
    return path


@pytest.fixture
def main(capsys: pytest.CaptureFixture[str]) -> Main:
    """Run ``vmsnap.cli.main`` in this process: (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def host_lvm_empty() -> None:
    """Some tests need this host's real ``lvs`` to work and know no vg0."""
    try:
        volumes = lvm.list_volumes()
    except LvmError as exc:
        pytest.skip(f"lvs does not work here: {exc}")
    if any(v.vg == "vg0" for v in volumes):
        pytest.skip("this host has a VG named vg0")
