"""pytest fixtures of a real S3 store: one SeaweedFS server per test session,
a fresh bucket per test, the AWS variables of a client, a fault proxy.

A test folder gets them by importing them into its conftest.py (tests/s3 does):

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "objstore"))
    from s3fixtures import bucket, proxy, s3env, seaweed

A test may kill or stop the session's server; the next ``bucket`` starts it
again on the same ports and data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from faultproxy import FaultProxy
from seaweed import Seaweed


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """The session's SeaweedFS server (weed mini on loopback), running."""
    with Seaweed(base=tmp_path_factory.mktemp("seaweed")) as server:
        yield server


def _running(server: Seaweed) -> Seaweed:
    return server if server.running else server.start()


@pytest.fixture
def bucket(seaweed: Seaweed) -> Iterator[str]:
    """A new, empty bucket of the test's own; removed with its objects after."""
    name = _running(seaweed).make_bucket(f"vmsnap-{uuid.uuid4().hex[:16]}")
    yield name
    _running(seaweed).remove_bucket(name)


@pytest.fixture
def s3env(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The admin's AWS_* variables set for the test (any other AWS_* unset)."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    env = seaweed.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def proxy(seaweed: Seaweed) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the server's S3 port, up."""
    with FaultProxy(seaweed.endpoint) as fault_proxy:
        yield fault_proxy
