"""The image engine on real files, checked against the real zstd CLI."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard
from unitkit import chunk_sha256

from vmsnap import frames, image
from vmsnap.errors import ExitCode, IntegrityError, TruncatedError

CHUNK = image.CHUNK
MiB = 1 << 20


def random_bytes(n: int, seed: int = 0) -> bytes:
    """Deterministic incompressible data."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha512(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def compress_file(src: Path, dst: Path, *, size: bool = True) -> image.StreamStats:
    with src.open("rb") as f, dst.open("wb") as out:
        return image.compress(f, out, size=src.stat().st_size if size else None)


def decompress_file(src: Path, dst: Path, **kwargs: Any) -> image.StreamStats:
    with src.open("rb") as f, dst.open("wb") as out:
        return image.decompress(f, out, **kwargs)


def zstd_dc(path: Path) -> bytes:
    return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout


def zstd_t(path: Path) -> int:
    return subprocess.run(
        ["zstd", "-t", "-q", str(path)], capture_output=True, check=False
    ).returncode


SIZES = [0, 1, 4095, CHUNK - 1, CHUNK + 1, 2 * CHUNK + 12345]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["random", "zero"])
def test_roundtrip_on_files(tmp_path: Path, size: int, kind: str) -> None:
    data = random_bytes(size) if kind == "random" else bytes(size)
    src, img, back = tmp_path / "src", tmp_path / "img.zst", tmp_path / "back"
    src.write_bytes(data)

    stats = compress_file(src, img)
    assert stats.size == size
    assert stats.chunk_sha256 == chunk_sha256(data)
    assert stats.compressed_size == img.stat().st_size
    assert zstd_dc(img) == data
    assert image.declared_size(img.read_bytes()[: image.HEAD_BYTES]) == size

    again = decompress_file(img, back, expected_size=size, expected_digest=stats.chunk_sha256)
    assert again == stats
    assert back.read_bytes() == data


def test_zero_data_compresses_well(tmp_path: Path) -> None:
    src, img = tmp_path / "src", tmp_path / "img.zst"
    src.write_bytes(bytes(3 * CHUNK))
    stats = compress_file(src, img)
    assert stats.compressed_size < 64 * 1024


def test_unknown_size_is_not_declared(tmp_path: Path) -> None:
    data = random_bytes(CHUNK + 7)
    src, img = tmp_path / "src", tmp_path / "img.zst"
    src.write_bytes(data)
    compress_file(src, img, size=False)
    assert image.declared_size(img.read_bytes()[: image.HEAD_BYTES]) is None
    assert zstd_dc(img) == data
    assert image.decompress(io.BytesIO(img.read_bytes()), io.BytesIO()).size == len(data)


def test_progress_adds_up(tmp_path: Path) -> None:
    data = random_bytes(2 * CHUNK + 3)
    seen: list[int] = []
    out = io.BytesIO()
    image.compress(io.BytesIO(data), out, size=len(data), progress=seen.append)
    assert sum(seen) == len(data)
    back: list[int] = []
    image.decompress(io.BytesIO(out.getvalue()), io.BytesIO(), progress=back.append)
    assert sum(back) == len(data)


def test_concatenated_images(tmp_path: Path) -> None:
    a, b = random_bytes(1000, seed=1), bytes(5000) + random_bytes(10, seed=2)
    parts = []
    for data in (a, b):
        out = io.BytesIO()
        image.compress(io.BytesIO(data), out, size=len(data))
        parts.append(out.getvalue())
    img = tmp_path / "cat.zst"
    img.write_bytes(b"".join(parts))
    assert zstd_dc(img) == a + b
    # the first image's header declares its own size: an appended image is
    # refused, not silently made part of the volume
    with pytest.raises(IntegrityError, match="header declares 1000 bytes, decoded 6010"):
        image.decompress(io.BytesIO(img.read_bytes()), io.BytesIO())
    # plain zstd streams (no vmsnap header) concatenate as zstd says
    plain = tmp_path / "plain.zst"
    plain.write_bytes(zstandard.compress(a) + zstandard.compress(b))
    assert image.decompress(io.BytesIO(plain.read_bytes()), io.BytesIO()).size == len(a + b)


# ---------------------------------------------------------------- damage


@pytest.fixture
def sample(tmp_path: Path) -> tuple[bytes, Path]:
    data = random_bytes(CHUNK + MiB + 4321) + bytes(MiB)
    src, img = tmp_path / "src", tmp_path / "img.zst"
    src.write_bytes(data)
    compress_file(src, img)
    return data, img


def test_flipped_bit_is_detected(sample: tuple[bytes, Path], tmp_path: Path) -> None:
    _data, img = sample
    raw = bytearray(img.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    bad = tmp_path / "bad.zst"
    bad.write_bytes(bytes(raw))
    assert zstd_t(bad) != 0
    with pytest.raises(IntegrityError) as info:
        decompress_file(bad, tmp_path / "out")
    assert info.value.exit_code == ExitCode.INTEGRITY


def test_garbage_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError):
        image.decompress(io.BytesIO(b"not zstd at all" * 100), io.BytesIO())
    with pytest.raises(IntegrityError, match="not a zstd image"):
        image.declared_size(b"not zstd")


@pytest.mark.parametrize(
    "keep",
    [
        pytest.param(lambda n: n // 2, id="half"),
        pytest.param(lambda n: n - 100, id="last-block-cut"),
        pytest.param(lambda n: 20, id="first-block-cut"),
        pytest.param(lambda n: 10, id="header-only"),
        pytest.param(
            lambda n: n - 4,
            id="checksum-missing",
        ),
        pytest.param(
            lambda n: n - 1,
            id="checksum-cut",
        ),
        pytest.param(
            lambda n: 5,
            id="header-cut",
        ),
        pytest.param(
            lambda n: 0,
            id="empty",
        ),
    ],
)
def test_truncated_image_is_detected(
    sample: tuple[bytes, Path], tmp_path: Path, keep: Callable[[int], int]
) -> None:
    _data, img = sample
    raw = img.read_bytes()
    cut = tmp_path / "cut.zst"
    cut.write_bytes(raw[: keep(len(raw))])
    assert zstd_t(cut) != 0  # the zstd CLI calls every one of these broken
    with pytest.raises(IntegrityError):
        decompress_file(cut, tmp_path / "out")


def test_truncated_image_of_unknown_size_is_detected(tmp_path: Path) -> None:
    data = random_bytes(CHUNK + MiB)
    out = io.BytesIO()
    image.compress(io.BytesIO(data), out)  # no size: what `image dump -` writes
    raw = out.getvalue()
    cut = tmp_path / "cut.zst"
    cut.write_bytes(raw[: len(raw) // 2])
    assert zstd_t(cut) != 0
    with pytest.raises(IntegrityError):
        decompress_file(cut, tmp_path / "out")


@pytest.fixture
def small_sample() -> tuple[bytes, bytes]:
    """Data and its image, small enough to feed a byte at a time."""
    data = random_bytes(40_000) + bytes(30_000)
    out = io.BytesIO()
    image.compress(io.BytesIO(data), out, size=len(data))
    return data, out.getvalue()


class ShortReads:
    """A source that, like a pipe or a socket, returns fewer bytes than asked."""

    def __init__(self, data: bytes, most: int) -> None:
        self._buf = io.BytesIO(data)
        self._most = most

    def read(self, size: int = -1, /) -> bytes:
        return self._buf.read(self._most if size < 0 else min(size, self._most))


@pytest.mark.parametrize("most", [1, 8, pytest.param(4096, id="4096")])
def test_short_reads_decode_completely(small_sample: tuple[bytes, bytes], most: int) -> None:
    data, raw = small_sample
    out = io.BytesIO()
    stats = image.decompress(ShortReads(raw, most), out)
    assert out.getvalue() == data
    assert stats.compressed_size == len(raw)


@pytest.mark.parametrize(
    "most",
    [
        pytest.param(
            1,
        ),
        pytest.param(
            8,
        ),
        4096,
    ],
)
def test_truncation_is_detected_through_short_reads(
    small_sample: tuple[bytes, bytes], most: int
) -> None:
    _data, raw = small_sample
    with pytest.raises(IntegrityError, match="truncated"):
        image.decompress(ShortReads(raw[: len(raw) // 2], most), io.BytesIO())


def test_expected_size_and_digest(sample: tuple[bytes, Path]) -> None:
    data, img = sample
    raw = img.read_bytes()
    good = chunk_sha256(data)
    image.decompress(io.BytesIO(raw), io.BytesIO(), expected_size=len(data), expected_digest=good)
    with pytest.raises(IntegrityError, match="bytes"):
        image.decompress(io.BytesIO(raw), io.BytesIO(), expected_size=len(data) + 1)
    with pytest.raises(IntegrityError, match="bytes"):
        image.decompress(io.BytesIO(raw), io.BytesIO(), expected_size=len(data) - 1)
    with pytest.raises(IntegrityError, match="sha256"):
        image.decompress(io.BytesIO(raw), io.BytesIO(), expected_digest="0" * 64)


@pytest.mark.parametrize(("delivered", "size"), [(100, 200), (0, 200), (4 * MiB, 5 * MiB)])
def test_source_shorter_than_its_size(delivered: int, size: int) -> None:
    with pytest.raises(IntegrityError, match=f"read {delivered} bytes where {size}"):
        image.compress(io.BytesIO(bytes(delivered)), io.BytesIO(), size=size)


@pytest.mark.parametrize(
    ("delivered", "size"),
    [
        pytest.param(300, 200),
        pytest.param(1, 0),
        (5 * MiB, 4 * MiB),
    ],
)
def test_source_longer_than_its_size(delivered: int, size: int) -> None:
    with pytest.raises(IntegrityError):
        image.compress(io.BytesIO(bytes(delivered)), io.BytesIO(), size=size)


# ---------------------------------------------------------------- sparse output


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_sparse_output_has_the_same_bytes_and_fewer_blocks(tmp_path: Path) -> None:
    # zero chunks at the start, in the middle and a short one at the end
    data = (
        bytes(2 * CHUNK) + random_bytes(MiB) + bytes(3 * CHUNK) + random_bytes(7) + bytes(CHUNK + 5)
    )
    src, img = tmp_path / "src", tmp_path / "img.zst"
    src.write_bytes(data)
    compress_file(src, img)
    dense, sparse = tmp_path / "dense", tmp_path / "sparse"
    decompress_file(img, dense)
    stats = decompress_file(img, sparse, sparse=True)

    assert stats.size == len(data)
    assert stats.chunk_sha256 == chunk_sha256(data)
    assert sparse.stat().st_size == len(data)
    assert sparse.read_bytes() == data
    assert dense.read_bytes() == data
    assert allocated(dense) >= len(data) - CHUNK
    assert allocated(sparse) <= 3 * CHUNK


def test_sparse_all_zero_output(tmp_path: Path) -> None:
    data = bytes(2 * CHUNK + 123)
    img, out = tmp_path / "img.zst", tmp_path / "out"
    with img.open("wb") as f:
        image.compress(io.BytesIO(data), f, size=len(data))
    decompress_file(img, out, sparse=True)
    assert out.stat().st_size == len(data)
    assert allocated(out) < CHUNK
    assert out.read_bytes() == data


# ---------------------------------------------------------------- helpers


def test_read_full_retries_short_reads() -> None:
    assert image.read_full(ShortReads(b"abcdefghij", 3), 8) == b"abcdefgh"
    assert image.read_full(ShortReads(b"abc", 2), 8) == b"abc"
    assert image.read_full(ShortReads(b"", 2), 8) == b""


def test_device_size(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1234)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert image.device_size(fd) == 1234
    finally:
        os.close(fd)
    r, w = os.pipe()
    try:
        assert image.device_size(r) is None
    finally:
        os.close(r)
        os.close(w)


# ---------------------------------------------------------------- the fast paths


def frames_of(raw: bytes) -> list[bytes]:
    """The zstd frames of an image, as the splitter cuts them."""
    splitter = frames.FrameSplitter(io.BytesIO(raw), whole_limit=1 << 40)
    out = []
    for frame in splitter:
        assert isinstance(frame, frames.Whole)
        out.append(frame.data)
    assert splitter.header is not None
    return out


def test_one_frame_per_chunk_and_zero_chunks_are_precomputed_frames() -> None:
    data = random_bytes(CHUNK) + bytes(2 * CHUNK) + random_bytes(CHUNK, seed=3) + bytes(100)
    out = io.BytesIO()
    stats = image.compress(io.BytesIO(data), out, size=len(data))
    parts = frames_of(out.getvalue())
    assert len(parts) == 5
    assert parts[1] == parts[2] == image.zero_frame()
    assert len(image.zero_frame()) < 1024
    assert [zstandard.frame_content_size(p) for p in parts] == [CHUNK] * 4 + [100]
    assert stats.chunk_sha256 == chunk_sha256(data)


def test_an_empty_volume_is_one_empty_frame() -> None:
    out = io.BytesIO()
    image.compress(io.BytesIO(b""), out, size=0)
    assert [zstandard.frame_content_size(p) for p in frames_of(out.getvalue())] == [0]
    assert image.decompress(io.BytesIO(out.getvalue()), io.BytesIO(), expected_size=0).size == 0


def foreign_data() -> bytes:
    """More than WHOLE_LIMIT, not chunk aligned: zeros, noise, text."""
    return bytes(5 * MiB) + random_bytes(6 * MiB + 7) + b"vmsnap " * (1 << 20) + bytes(CHUNK)


@pytest.mark.parametrize("known_size", [True, False])
@pytest.mark.parametrize("sparse", [True, False])
def test_a_single_large_frame_from_another_writer_is_streamed(
    tmp_path: Path, known_size: bool, sparse: bool
) -> None:
    data = foreign_data()
    assert len(data) > image.WHOLE_LIMIT
    cctx = zstandard.ZstdCompressor(write_checksum=True)
    raw = cctx.compress(data) if known_size else b"".join(cctx.read_to_iter(io.BytesIO(data)))
    back = tmp_path / "back"
    with back.open("wb") as f:
        stats = image.decompress(io.BytesIO(raw), f, expected_size=len(data), sparse=sparse)
    assert back.read_bytes() == data
    assert stats.chunk_sha256 == chunk_sha256(data)
    assert stats.compressed_size == len(raw)
    with pytest.raises(TruncatedError):
        image.decompress(io.BytesIO(raw[:-3]), io.BytesIO())


def test_many_small_frames_not_chunk_aligned() -> None:
    """A stream of 1 MiB frames (another writer): the digest is still per 4 MiB."""
    data = random_bytes(9 * MiB + 5) + bytes(3 * MiB)
    raw = b"".join(zstandard.compress(data[i : i + MiB]) for i in range(0, len(data), MiB))
    stats = image.decompress(io.BytesIO(raw), io.BytesIO(), expected_size=len(data))
    assert stats.chunk_sha256 == chunk_sha256(data)


def test_the_digest_is_what_coreutils_computes(tmp_path: Path) -> None:
    data = random_bytes(2 * CHUNK + 999) + bytes(CHUNK)
    src, img = tmp_path / "src", tmp_path / "img.zst"
    src.write_bytes(data)
    stats = compress_file(src, img)
    split = subprocess.run(
        ["split", "-b", str(CHUNK), "--filter=sha256sum", str(src)],
        capture_output=True,
        check=True,
    ).stdout
    lines = b"".join(line[:64] + b"\n" for line in split.splitlines())
    assert stats.chunk_sha256 == hashlib.sha256(lines).hexdigest()


def test_header_declares_the_size_even_for_many_frames(tmp_path: Path) -> None:
    data = random_bytes(CHUNK + 1)
    out = io.BytesIO()
    image.compress(io.BytesIO(data), out, size=len(data))
    assert image.declared_size(out.getvalue()[: image.HEAD_BYTES]) == len(data)


class FileAt:
    """A regular file as a positional sink (what image load and restore use)."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def write(self, data: bytes) -> int:
        return int(self.f.write(data))

    def write_at(self, data: bytes, offset: int) -> None:
        os.pwrite(self.f.fileno(), data, offset)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.f.seek(offset, whence))

    def truncate(self, size: int | None = None) -> int:
        return int(self.f.truncate(size))


@pytest.mark.parametrize("sparse", [True, False])
def test_workers_write_in_place_around_a_streamed_frame(tmp_path: Path, sparse: bool) -> None:
    """Whole frames are written by the workers at their offsets; a large frame
    in the middle is streamed by the main thread; the offsets still add up."""

    def frames_only(data: bytes) -> bytes:
        img = io.BytesIO()
        image.compress(io.BytesIO(data), img)
        return b"".join(frames_of(img.getvalue()))  # without the header

    head = random_bytes(CHUNK) + bytes(CHUNK)
    big = foreign_data()
    tail = bytes(CHUNK) + random_bytes(CHUNK + 1000, seed=6)
    raw = (
        frames_only(head)
        + zstandard.ZstdCompressor(write_checksum=True).compress(big)
        + frames_only(tail)
    )
    data = head + big + tail
    out = tmp_path / "out"
    with out.open("wb") as f:
        stats = image.decompress(io.BytesIO(raw), FileAt(f), sparse=sparse)
    assert stats.size == len(data)
    assert out.read_bytes() == data
    assert stats.chunk_sha256 == chunk_sha256(data)


def test_holes_of_a_sparse_file_are_zeros_without_reading(tmp_path: Path) -> None:
    """Data at odd offsets, holes spanning several chunks, a hole at the end and
    a short last chunk: the image is exactly the file, holes and all."""
    src = tmp_path / "sparse"
    size = 9 * CHUNK + 12345
    with src.open("wb") as f:
        f.truncate(size)
        for offset, data in (
            (100, b"start"),
            (CHUNK + 7, random_bytes(3 * MiB)),
            (6 * CHUNK - 1, b"across a chunk boundary"),
        ):
            f.seek(offset)
            f.write(data)
    data = src.read_bytes()
    img = tmp_path / "img.zst"
    stats = compress_file(src, img)
    assert stats.size == size
    assert stats.chunk_sha256 == chunk_sha256(data)
    assert zstd_dc(img) == data
    parts = frames_of(img.read_bytes())
    assert sum(p == image.zero_frame() for p in parts) >= 4  # chunks 3, 4, 7, 8 are holes
