"""--snapshot-size parsing and human-readable sizes."""

from __future__ import annotations

import pytest

from vmsnap.errors import ExitCode, UsageError
from vmsnap.models import SizeSpec, human_size

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2G", 2 * GiB),
        ("2g", 2 * GiB),
        ("512M", 512 * MiB),
        ("512m", 512 * MiB),
        ("1.5G", 3 * GiB // 2),
        ("64K", 64 * KiB),
        ("1T", TiB),
        ("4096", 4096),
        ("4096b", 4096),
        ("5GiB", 5 * GiB),
        ("5GB", 5 * GiB),
        (" 2G ", 2 * GiB),
        ("0.5K", 512),
    ],
)
def test_parse_absolute_sizes(text: str, size: int) -> None:
    assert SizeSpec.parse(text) == SizeSpec(size=size)


@pytest.mark.parametrize(
    ("text", "percent"), [("10%", 10.0), ("100%", 100.0), ("0.5%", 0.5), ("20 %", 20.0)]
)
def test_parse_percentages(text: str, percent: float) -> None:
    assert SizeSpec.parse(text) == SizeSpec(percent=percent)


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "0G",
        "0.1",
        "abc",
        "",
        "%",
        "150%",
        "100.1%",
        "0%",
        "-5%",
        "-1G",
        "5Gi",
        "5X",
        "G",
        "1,5G",
        "nan%",
        "inf%",
        "10%%",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        SizeSpec.parse(text)
    assert info.value.exit_code == ExitCode.USAGE


def test_for_origin() -> None:
    assert SizeSpec(size=123).for_origin(10 * GiB) == 123
    assert SizeSpec(percent=10).for_origin(10 * GiB) == GiB
    assert SizeSpec(percent=100).for_origin(4096) == 4096
    assert SizeSpec(percent=20).for_origin(1001) == 200  # rounded down here, up to extents later


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (MiB, "1.0 MiB"),
        (5 * GiB // 2, "2.5 GiB"),
        (TiB, "1.0 TiB"),
        (1024 * TiB, "1024.0 TiB"),
    ],
)
def test_human_size(n: int | None, text: str) -> None:
    assert human_size(n) == text
