"""vmsnap's image engine against the pipelines people use instead.

Generates the data (tests/bench/gen.py, deterministic), then runs each job in
rounds, vmsnap and its peers in turn, and prints medians: throughput in MB/s
(10^6 bytes of raw volume per second), the ratio to vmsnap, and peak RSS.
Outputs go to a tmpfs when there is room (so every tool pays the same for its
writes: memory, not a disk), else next to the data.  Not a pass/fail test: the
last column says which goal was met.  ``--quick`` runs a small smoke version.
Then the incremental table (incr.py): ``vmsnap image store`` into a chunk
repository, night after night, on the same mixed data, in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from incr import Incremental, Repo
from pipeline import MIB, VMSNAP, Run, run_pipeline, sha256_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA_VERSION = 2  # bumped when gen.py makes other bytes


@dataclass
class Job:
    name: str
    size: int  # raw bytes handled
    commands: dict[str, str]  # label -> shell-free description (for the table)
    runs: dict[str, list[Run]] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, size: int, cmds: dict[str, list[list[str]]]) -> Job:
        return cls(name, size, {k: " | ".join(" ".join(a) for a in v) for k, v in cmds.items()})

    def median(self, label: str) -> Run:
        runs = self.runs[label]
        return Run(statistics.median(r.seconds for r in runs), max(r.rss_kib for r in runs))

    def mbps(self, label: str) -> float:
        return self.size / self.median(label).seconds / 1e6


def fresh(path: Path) -> Path:
    path.unlink(missing_ok=True)
    return path


def zstd_dc_sha256(image: Path) -> str:
    proc = subprocess.Popen(["zstd", "-dcq", str(image)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    digest = hashlib.sha256()
    while block := proc.stdout.read(4 * MIB):
        digest.update(block)
    if proc.wait():
        raise SystemExit(f"zstd -dc {image} failed")
    return digest.hexdigest()


class Bench:
    def __init__(self, data: Path, out: Path, rounds: int) -> None:
        self.data, self.out, self.rounds = data, out, rounds

    def dump_job(self, name: str, src: Path) -> Job:
        img = self.out / "vmsnap.zst"
        cmds = {
            "vmsnap": [[VMSNAP, "-q", "image", "dump", str(src), str(img)]],
            "vmsnap, progress shown": [
                [VMSNAP, "image", "dump", "--progress", str(src), str(self.out / "p.zst")]
            ],
            "dd | zstd -T0 -3": [
                ["dd", f"if={src}", "bs=4M", "status=none"],
                ["zstd", "-q", "-T0", "-3"],
            ],
            "zstd -T0 -3 SRC -o OUT": [
                ["zstd", "-q", "-f", "-T0", "-3", str(src), "-o", str(self.out / "cli.zst")]
            ],
        }
        job = Job.of(name, src.stat().st_size, cmds)
        for _ in range(self.rounds):
            for label, stages in cmds.items():
                if label == "vmsnap":
                    fresh(img)
                fresh(self.out / "p.zst")
                target = fresh(self.out / "pipe.zst") if label.startswith("dd") else None
                quiet = "progress" in label  # the bars go to /dev/null
                job.runs.setdefault(label, []).append(run_pipeline(stages, target, quiet=quiet))
        if zstd_dc_sha256(img) != sha256_file(src):  # the check is not timed
            raise SystemExit(f"{name}: zstd -dc of vmsnap's image differs from the source")
        return job

    def load_job(self, name: str, src: Path) -> Job:
        img = self.out / "vmsnap.zst"
        run_pipeline([[VMSNAP, "-q", "image", "dump", str(src), str(fresh(img))]])
        dst = self.out / "restored.raw"
        cmds = {
            "vmsnap": [[VMSNAP, "-q", "image", "load", str(img), str(dst)]],
            "zstd -dc | dd": [
                ["zstd", "-dcq", str(img)],
                ["dd", f"of={dst}", "bs=4M", "status=none"],
            ],
        }
        job = Job.of(name, src.stat().st_size, cmds)
        for _ in range(self.rounds):
            for label, stages in cmds.items():
                fresh(dst)
                job.runs.setdefault(label, []).append(run_pipeline(stages))
                if label == "vmsnap" and sha256_file(dst) != sha256_file(src):
                    raise SystemExit(f"{name}: vmsnap image load gave other bytes")
        return job


def table(jobs: list[Job], goals: dict[tuple[str, str], tuple[float, str]]) -> str:
    lines = [
        f"{'job':<31} {'tool':<24} {'MB/s':>8} {'vmsnap is':>10} {'peak RSS':>9}  goal",
    ]
    for job in jobs:
        base = job.mbps("vmsnap")
        for label in job.runs:
            mbps = job.mbps(label)
            ratio = "" if label == "vmsnap" else f"{base / mbps:.2f}x"
            rss = f"{job.median(label).rss_kib / 1024:.0f} MiB"
            goal = ""
            if (job.name, label) in goals:
                want, unit = goals[(job.name, label)]
                got = mbps if unit == "MB/s" else base / mbps
                mark = "met" if got >= want else "MISSED"
                goal = f">= {want:g}{'x' if unit == 'x' else ' MB/s'}: {mark}"
            lines.append(f"{job.name:<31} {label:<24} {mbps:>8.0f} {ratio:>10} {rss:>9}  {goal}")
    return "\n".join(lines)


def scratch(data: Path, need: int) -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > need + (1 << 30):
        out = shm / f"vmsnap-bench-{os.getpid()}"  # two runs at once must not collide
    else:
        out = data / "out"
    out.mkdir(parents=True, exist_ok=True)
    return out


def generate(data: Path, kind: str, size_mib: int) -> Path:
    path = data / f"{kind}-{size_mib}-v{DATA_VERSION}.img"
    if not path.exists() or path.stat().st_size != size_mib * MIB:
        argv = [sys.executable, str(HERE / "gen.py"), kind, str(path), "--size-mib", str(size_mib)]
        subprocess.run(argv, check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--big-size-mib", type=int, default=8192, help="for the RSS check")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="64 MiB, one round: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.size_mib, args.big_size_mib, args.rounds = 64, 128, 1
    data = ROOT / "build" / "bench"
    data.mkdir(parents=True, exist_ok=True)
    mixed = generate(data, "mixed", args.size_mib)
    zeros = generate(data, "zeros", args.size_mib)
    written = generate(data, "zeros-allocated", args.size_mib)
    big = generate(data, "mixed", args.big_size_mib)
    out = scratch(data, (3 * args.size_mib + args.big_size_mib // 2) * MIB)  # images + one raw
    bench = Bench(data, out, args.rounds)
    size = human(args.size_mib)
    try:
        jobs = [
            bench.dump_job(f"dump mixed {size}", mixed),
            bench.dump_job(f"dump all-zero {size} (sparse)", zeros),
            bench.dump_job(f"dump all-zero {size}, written", written),
            bench.load_job(f"load mixed {size}, new file", mixed),
        ]
        big_run = run_pipeline(
            [[VMSNAP, "-q", "image", "dump", str(big), str(fresh(out / "big.zst"))]]
        )
        clear(out)
        incremental = incremental_table(mixed, big, out, args)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    goals = {
        (jobs[0].name, "dd | zstd -T0 -3"): (1.6, "x"),
        (jobs[0].name, "zstd -T0 -3 SRC -o OUT"): (1.3, "x"),
        (jobs[1].name, "vmsnap"): (3000.0, "MB/s"),
        (jobs[3].name, "zstd -dc | dd"): (2.0, "x"),
    }
    cpus = os.cpu_count()
    print(f"vmsnap image engine, {cpus} CPUs, medians of {args.rounds} rounds, outputs in {out}")
    print(table(jobs, goals))
    small_rss = jobs[0].median("vmsnap").rss_kib / 1024
    print(rss_line("image dump", small_rss, big_run, size, human(args.big_size_mib)))
    print()
    print("\n".join(incremental))


def human(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib >= 1024 else f"{mib} MiB"


def clear(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)


def rss_line(what: str, small_rss: float, big_run: Run, size: str, big_size: str) -> str:
    big_rss = big_run.rss_kib / 1024
    ok = max(small_rss, big_rss) <= 200 and abs(big_rss - small_rss) <= 0.1 * small_rss + 16
    return (
        f"peak RSS of vmsnap {what}: {small_rss:.0f} MiB for {size}, {big_rss:.0f} MiB for "
        f"{big_size} ({big_run.seconds:.1f} s); goal <= 200 MiB and flat: {_mark(ok)}"
    )


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def incremental_table(mixed: Path, big: Path, out: Path, args: argparse.Namespace) -> list[str]:
    """The rows of ``vmsnap image store`` (tests/bench/incr.py), on the mixed data."""
    incr = Incremental(mixed, out, args.rounds)
    repo, firsts, _full = incr.nights()
    incr.clones()
    image = out / "single.zst"
    run_pipeline([[VMSNAP, "-q", "image", "dump", str(incr.vol), str(image)]])
    ours, theirs = incr.restore(repo, image)
    vol_size = incr.vol.stat().st_size
    big_run = Repo(out / "big").store(big, "big").run
    small_rss = max(f.run.rss_kib for f in firsts) / 1024
    label = f"restore newest, {human(args.size_mib)}"
    return [
        f"incremental: vmsnap image store of mixed {human(args.size_mib)} into a repository,"
        f" chunk index in its cache folder (medians of {args.rounds} rounds; nights, clones once)",
        *incr.lines,
        f"{label:<34} export | zstd -dc {vol_size / ours.seconds / 1e6:.0f} MB/s,"
        f" zstd -dc of one image {vol_size / theirs.seconds / 1e6:.0f} MB/s:"
        f" vmsnap is {theirs.seconds / ours.seconds:.2f}x",
        rss_line("image store", small_rss, big_run, human(args.size_mib), human(args.big_size_mib)),
    ]


if __name__ == "__main__":
    main()
