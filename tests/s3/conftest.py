"""The S3 tests: a real SeaweedFS started by the tests themselves (see
tests/objstore). Every test here is marked ``s3`` (make test-s3)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "objstore"))
from s3fixtures import bucket, proxy, s3env, seaweed

__all__ = ["bucket", "proxy", "s3env", "seaweed"]

HERE = os.path.dirname(__file__)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.path).startswith(HERE):
            item.add_marker(pytest.mark.s3)
