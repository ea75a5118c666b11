"""Running the benchmark's commands: pipelines of processes, timed, with the
largest peak RSS among them (shared by bench.py and incr.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

VMSNAP = str(Path(sys.executable).parent / "vmsnap")
MIB = 1 << 20


@dataclass
class Run:
    seconds: float
    rss_kib: int  # the largest of the pipeline's processes


def run_pipeline(
    stages: Sequence[Sequence[str]],
    stdout: Path | None = None,
    *,
    quiet: bool = False,
    env: dict[str, str] | None = None,
) -> Run:
    """Run ``stages`` connected by pipes; wall time and the largest peak RSS."""
    start = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    prev = None
    sink = stdout.open("wb") if stdout else subprocess.DEVNULL
    try:
        for i, argv in enumerate(stages):
            last = i == len(stages) - 1
            proc = subprocess.Popen(
                argv,
                stdin=prev,
                stdout=sink if last else subprocess.PIPE,
                stderr=subprocess.DEVNULL if quiet else None,
                env=env,
            )
            if prev is not None:
                prev.close()
            prev = proc.stdout
            procs.append(proc)
        rss = 0
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode:
                raise SystemExit(f"{' '.join(proc.args)} failed ({proc.returncode})")  # type: ignore[arg-type]
            rss = max(rss, usage.ru_maxrss)
    finally:
        if stdout:
            sink.close()  # type: ignore[union-attr]
    return Run(time.monotonic() - start, rss)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()
