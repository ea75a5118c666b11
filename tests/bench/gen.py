"""Deterministic benchmark images: a realistic mixed disk and an all-zero one.

The mixed image is fully allocated (zeros are written, as on a real volume:
no holes to skip) and laid out in extents whose lengths are log-uniform between
64 KiB and 32 MiB (4 KiB aligned, like a filesystem's); about 55% of the bytes
are zero extents, the rest are cut from the host's own binaries and text files
(sorted paths, so the same packages give the same bytes) with some seeded
random data.  The layout and the choice of content depend only on the seed.
"""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Iterator
from pathlib import Path

KIB, MIB = 1 << 10, 1 << 20
ZERO_SHARE = 0.55
BINARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/sbin", "/usr/lib/python3")
TEXT_DIRS = (
    "/usr/share/perl",
    "/usr/share/perl5",
    "/usr/lib/python3/dist-packages",
    "/usr/share/doc",
)
TEXT_SUFFIXES = (".py", ".pm", ".pl", ".txt", ".html", ".md", ".rst", ".conf", ".sh", ".h")
CORPUS_MAX = 192 * MIB


def _files(roots: tuple[str, ...], want_text: bool) -> Iterator[Path]:
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if path.is_symlink() or not path.is_file():
                    continue
                if want_text == path.name.endswith(TEXT_SUFFIXES):
                    yield path


def corpus(roots: tuple[str, ...], want_text: bool) -> bytes:
    parts, total = [], 0
    for path in _files(roots, want_text):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        parts.append(data)
        total += len(data)
        if total >= CORPUS_MAX:
            break
    if total < 16 * MIB:
        raise SystemExit(f"too little {'text' if want_text else 'binary'} content under {roots}")
    return b"".join(parts)[:CORPUS_MAX]


class Source:
    """Hands out consecutive slices of a corpus, wrapping around."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            piece = self.data[self.pos : self.pos + size - len(out)]
            out += piece
            self.pos = (self.pos + len(piece)) % len(self.data)
        return bytes(out)


def extent_length(rng: random.Random) -> int:
    exponent = rng.uniform(16, 25)  # 64 KiB .. 32 MiB
    return max(4 * KIB, int(2**exponent) // (4 * KIB) * (4 * KIB))


def mixed(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    binary = Source(corpus(BINARY_DIRS, want_text=False))
    text = Source(corpus(TEXT_DIRS, want_text=True))
    with path.open("wb") as out:
        pos = zero = 0
        while pos < size:
            length = min(extent_length(rng), size - pos)
            kind = rng.random()
            # steer towards the zero share: a short run of bad luck is corrected
            if zero + length / 2 < ZERO_SHARE * (pos + length):
                out.write(bytes(length))  # written, not a hole: like a real volume
                zero += length
            elif kind < 0.45:
                out.write(binary.take(length))
            elif kind < 0.85:
                out.write(text.take(length))
            else:
                out.write(rng.randbytes(length))
            pos += length
        out.truncate(size)


def zeros(path: Path, size: int, *, allocated: bool) -> None:
    """All zeros: a sparse file (one hole), or every block written."""
    with path.open("wb") as out:
        if not allocated:
            out.truncate(size)
            return
        block = bytes(4 * MIB)
        for _ in range(size // len(block)):
            out.write(block)
        out.write(bytes(size % len(block)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("mixed", "zeros", "zeros-allocated"))
    parser.add_argument("path", type=Path)
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if args.kind == "mixed":
        mixed(args.path, args.size_mib * MIB, args.seed)
    else:
        zeros(args.path, args.size_mib * MIB, allocated=args.kind == "zeros-allocated")


if __name__ == "__main__":
    main()
