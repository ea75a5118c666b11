"""`vmsnap image dump|load` on real LVs, through files and pipes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from labkit import VG, Lab, sha256_of, vmsnap


def test_dump_and_load_between_lvs(lab: Lab, tmp_path: Path) -> None:
    src = lab.lv("img-src", 12)
    dst = lab.lv("img-dst", 12, seed="other")
    image = tmp_path / "src.img.zst"
    assert vmsnap("image", "dump", src, str(image)).returncode == 0
    before = sha256_of(dst)
    refused = vmsnap("image", "load", str(image), dst)  # an existing device needs --force
    assert refused.returncode == 9, refused.stderr
    assert "--force" in refused.stderr
    assert sha256_of(dst) == before
    assert vmsnap("image", "load", "--force", str(image), dst).returncode == 0
    assert sha256_of(dst) == sha256_of(src)


def test_dump_to_stdout_pipe(lab: Lab, tmp_path: Path) -> None:
    src = lab.lv("pipe-src", 8)
    out = tmp_path / "piped.img.zst"
    with out.open("wb") as sink:
        subprocess.run(
            [sys.executable, "-m", "vmsnap", "image", "dump", src, "-"], stdout=sink, check=True
        )
    raw = subprocess.run(["zstd", "-dc", str(out)], capture_output=True, check=True).stdout
    assert hashlib.sha256(raw).hexdigest() == sha256_of(src)


def test_load_onto_too_small_lv_refused(lab: Lab, tmp_path: Path) -> None:
    src = lab.lv("big-src", 12)
    small = lab.lv("small-dst", 4)
    small_before = sha256_of(small)
    image = tmp_path / "big.img.zst"
    assert vmsnap("image", "dump", src, str(image)).returncode == 0
    run = vmsnap("image", "load", "--force", str(image), f"/dev/{VG}/small-dst")
    assert run.returncode == 9, run.stderr
    assert "larger" in run.stderr
    assert sha256_of(small) == small_before  # refused before writing a byte
