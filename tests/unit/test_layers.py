"""The job modules compose the core; none of them imports another job module
(what two jobs share lives in a lower module: snapshots, lvwrite)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vmsnap

JOBS = ("backup", "restore", "clone", "checkpoint")
PACKAGE = Path(vmsnap.__file__).parent


def _imported(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "vmsnap":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.removeprefix("vmsnap."))
        elif isinstance(node, ast.Import):
            found.update(alias.name.removeprefix("vmsnap.") for alias in node.names)
    return found


@pytest.mark.parametrize("job", JOBS)
def test_a_job_module_imports_no_other_job_module(job: str) -> None:
    assert _imported(job) & (set(JOBS) - {job}) == set()
