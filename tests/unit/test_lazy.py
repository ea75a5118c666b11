"""Start-up cost: the CLI binds its command modules lazily, so a command loads
only what it uses (libvirt and zstandard cost about a third of a quick run)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vmsnap.lazy import lazy

PROBE = """
import sys
import vmsnap.cli
HEAVY = ("libvirt", "zstandard", "vmsnap.backup", "vmsnap.checkpoint")
loaded = [m for m in HEAVY if m in sys.modules]
heavy = [m for m in loaded if type(sys.modules[m]).__name__ != "_LazyModule"]
print(",".join(heavy))
"""


def test_importing_the_cli_loads_no_heavy_module() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


def test_a_lazy_module_loads_on_first_use() -> None:
    probe = """
import sys
from vmsnap.lazy import lazy
m = lazy("vmsnap.digest")
print(type(m).__name__, m.CHUNK, type(m).__name__)
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["_LazyModule", str(4 << 20), "module"]


def test_an_unknown_module_is_an_import_error() -> None:
    with pytest.raises(ImportError, match=r"no module named 'vmsnap\.nothing'"):
        lazy("vmsnap.nothing")
