"""The incremental table of ``make bench``: ``vmsnap image store`` into a chunk
repository, night after night, on the same data as the full-backup rows.

A night changes 1% of the volume's 4 MiB chunks, chosen at random (seeded):
each chosen chunk gets one write of WRITE bytes of random data (incompressible)
at a random 4 KiB-aligned offset, as a guest's scattered writes do; the chunk
is then new as a whole and stored whole.  A clone is the template with CLONE_SHARE
of its chunks changed the same way (a guest's first boot: machine id, keys,
logs, package caches).  The chunk index lives in a cache folder next to the
repository, part of what is measured (the first store builds it).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

from pipeline import MIB, VMSNAP, Run, run_pipeline, sha256_file

CHUNK = 4 * MIB
NIGHT_SHARE = 0.01
CLONE_SHARE = 0.03
WRITE = 256 * 1024
NIGHTS = 7


def change(path: Path, share: float, seed: int) -> int:
    """Write random bytes into ``share`` of the chunks of ``path``; how many."""
    rng = random.Random(seed)
    chunks = path.stat().st_size // CHUNK
    picked = rng.sample(range(chunks), max(1, round(chunks * share)))
    with path.open("r+b") as f:
        for n in sorted(picked):
            f.seek(n * CHUNK + rng.randrange(0, CHUNK - WRITE + 1, 4096))
            f.write(rng.randbytes(WRITE))
    return len(picked)


def du(folder: Path) -> int:
    """Bytes the folder takes on its file system (allocated blocks, as du)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in (*files, "."):
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


@dataclass
class Stored:
    run: Run
    stored: int  # compressed bytes of the chunks this store wrote
    size: int


class Repo:
    """A fresh repository and chunk cache under ``root``."""

    def __init__(self, root: Path) -> None:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        self.path, self.root = root / "repo", root
        self.env = {**os.environ, "VMSNAP_CACHE_DIR": str(root / "cache")}
        run_pipeline([[VMSNAP, "-q", "init", "--dest", str(self.path)]], env=self.env)

    def store(self, src: Path, name: str) -> Stored:
        doc = self.root / "store.json"
        argv = [VMSNAP, "-q", "image", "store", str(src), "--dest", str(self.path)]
        run = run_pipeline([[*argv, "--name", name, "--json"]], doc, env=self.env)
        result = json.loads(doc.read_text())
        return Stored(run, int(result["stored_bytes"]), int(result["size"]))


def median_run(runs: list[Run]) -> Run:
    return Run(statistics.median(r.seconds for r in runs), max(r.rss_kib for r in runs))


class Incremental:
    def __init__(self, src: Path, out: Path, rounds: int) -> None:
        self.src, self.out, self.rounds = src, out, rounds
        self.vol = out / "volume.img"
        self.lines: list[str] = []

    def copy_source(self, to: Path | None = None) -> Path:
        return Path(shutil.copyfile(self.src, to or self.vol))

    def nights(self) -> tuple[Repo, list[Stored], int]:
        """Rounds of (full, first night) on fresh repositories, the last round
        going on to 7 nights; the space of one full is taken after the full."""
        firsts: list[Stored] = []
        seconds: list[Stored] = []
        for _ in range(self.rounds):
            repo = Repo(self.out / "nights")
            self.copy_source()
            firsts.append(repo.store(self.vol, "vol"))
            full_space = du(repo.path)
            change(self.vol, NIGHT_SHARE, seed=1)
            seconds.append(repo.store(self.vol, "vol"))
        nights = [seconds[-1]]
        for night in range(2, NIGHTS + 1):
            change(self.vol, NIGHT_SHARE, seed=night)
            nights.append(repo.store(self.vol, "vol"))
        first, second = self._row(firsts), self._row(seconds)
        self._table(first, second, full_space, du(repo.path))
        self._each_night(first, nights)
        return repo, firsts, full_space

    @staticmethod
    def _row(stores: list[Stored]) -> Stored:
        return Stored(median_run([s.run for s in stores]), stores[-1].stored, stores[-1].size)

    def _table(self, first: Stored, second: Stored, full: int, seven: int) -> None:
        speed = first.run.seconds / second.run.seconds
        share = second.stored / first.stored
        changed = max(1, round(first.size // CHUNK * NIGHT_SHARE))
        self.lines += [
            _store_row("first store (full)", first),
            _store_row(f"second, {changed} chunks changed", second),
            f"{'second vs first':<34} {speed:.2f}x as fast, stores {100 * share:.2f}% of its bytes"
            f"  goal >= 3x: {_mark(speed >= 3)}; <= 3%: {_mark(share <= 0.03)}",
            f"{f'full + {NIGHTS} nights, 1% more each':<34} repository {seven / MIB:.0f} MiB ="
            f" {seven / full:.3f}x one full ({full / MIB:.0f} MiB)"
            f"  goal <= 1.2x: {_mark(seven <= 1.2 * full)}",
        ]

    def _each_night(self, first: Stored, nights: list[Stored]) -> None:
        """Every night of the last round, not only the first (whose chunks may
        happen to be zeros or data): the slowest and the largest."""
        slowest = max(n.run.seconds for n in nights)
        largest = max(n.stored for n in nights) / first.stored
        speed = first.run.seconds / slowest
        self.lines.append(
            f"{f'nights 1-{NIGHTS}, the worst of each':<34} slowest {slowest:.2f} s ({speed:.2f}x"
            f" as fast as the first), largest {100 * largest:.2f}% of its bytes"
            f"  goal >= 3x: {_mark(speed >= 3)}; <= 3%: {_mark(largest <= 0.03)}"
        )

    def clones(self) -> None:
        repo = Repo(self.out / "clones")
        repo.store(self.src, "template")
        template = du(repo.path)
        for seed, name in ((101, "clone-a"), (102, "clone-b")):
            clone = self.copy_source(repo.root / "clone.img")
            change(clone, CLONE_SHARE, seed=seed)
            repo.store(clone, name)
        total = du(repo.path)
        self.lines.append(
            f"{f'template + 2 clones ({100 * CLONE_SHARE:g}% changed)':<34} repository"
            f" {total / MIB:.0f} MiB = {total / template:.3f}x the template"
            f" ({template / MIB:.0f} MiB)  goal <= 1.1x: {_mark(total <= 1.1 * template)}"
        )
        shutil.rmtree(repo.root, ignore_errors=True)

    def restore(self, repo: Repo, image: Path) -> tuple[Run, Run]:
        """The newest backup back to a raw file: export | zstd -dc, against
        zstd -dc of a single-file image of the same volume (``image``)."""
        raw = self.out / "restored.raw"
        export = [VMSNAP, "-q", "export", "--dest", str(repo.path), "vol", "-o", "-"]
        ours, theirs = [], []
        for _ in range(self.rounds):
            ours.append(run_pipeline([export, ["zstd", "-dcq"]], raw, env=repo.env))
            if sha256_file(raw) != sha256_file(self.vol):
                raise SystemExit("vmsnap export | zstd -dc gave other bytes than the volume")
            theirs.append(run_pipeline([["zstd", "-dcq", str(image)]], raw))
        raw.unlink()
        return median_run(ours), median_run(theirs)


def _store_row(label: str, s: Stored) -> str:
    mbps = s.size / s.run.seconds / 1e6
    return (
        f"{label:<34} {s.run.seconds:>7.2f} s {mbps:>7.0f} MB/s stored {s.stored / MIB:>8.1f} MiB"
        f"  peak RSS {s.run.rss_kib / 1024:.0f} MiB"
    )


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"
