"""`make bench` must keep working: its quick mode runs every job once on small
data, checks vmsnap's output against the source (zstd -dc, load, and export
from a repository), and prints both tables (full and incremental)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench.py"


def test_the_benchmark_runs_and_checks_its_outputs() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    for job in ("dump mixed 64 MiB", "dump all-zero 64 MiB", "load mixed 64 MiB, new file"):
        assert any(row.startswith(job) and "vmsnap" in row for row in rows), proc.stdout
    assert "peak RSS of vmsnap image dump" in proc.stdout
    for row in (
        "first store (full)",
        "second vs first",
        "full + 7 nights",
        "nights 1-7",
        "template",
    ):
        assert any(line.startswith(row) for line in rows), proc.stdout
    assert "restore newest" in proc.stdout
    assert "peak RSS of vmsnap image store" in proc.stdout
