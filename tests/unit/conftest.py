"""Shared fixtures for the host-side unit tests: captured LVM output, libvirt
test-driver nodes, and a guard that puts signal handlers back."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from unitkit import LVS_LAB_REPORT


@pytest.fixture
def lvs_report() -> str:
    return LVS_LAB_REPORT


@pytest.fixture
def node_uri(tmp_path: Path) -> Callable[..., str]:
    """Write a test-driver ``<node>`` of the given domains and pools; its URI."""

    def make(*elements: str) -> str:
        path = tmp_path / "node.xml"
        path.write_text("<node>" + "".join(elements) + "</node>")
        return f"test://{path}"

    return make


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """Tests that install signal handlers put pytest's own back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture
def hook_dir() -> Iterator[Path]:
    """A hooks folder: hooks run only from root-owned folders no one else can
    write, all the way up (/tmp is world-writable), so it is made under /run."""
    if os.geteuid() != 0:
        pytest.skip("hooks are run only from root-owned folders: run as root")
    folder = Path(tempfile.mkdtemp(prefix="vmsnap-hooks-", dir="/run"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)
