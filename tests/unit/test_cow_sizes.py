"""snapshots.cow_sizes: how big each COW snapshot of thick LVs in one VG gets."""

from __future__ import annotations

import pytest

from vmsnap.errors import ExitCode, NoSpaceError
from vmsnap.models import SizeSpec
from vmsnap.snapshots import MIN_SNAPSHOT_SHARE, cow_sizes

MiB, GiB = 1 << 20, 1 << 30
EXTENT = 4 * MiB


def sizes(origins: list[int], free: int, spec: SizeSpec | None = None) -> list[int]:
    return cow_sizes(origins, free=free, extent=EXTENT, spec=spec, vg="vg0")


def test_explicit_size_that_fits() -> None:
    assert sizes([10 * GiB, 20 * GiB], 5 * GiB, SizeSpec(size=GiB)) == [GiB, GiB]


def test_explicit_size_is_rounded_up_to_the_extent() -> None:
    assert sizes([10 * GiB], 5 * GiB, SizeSpec(size=GiB + 1)) == [GiB + EXTENT]
    assert sizes([10 * GiB], 5 * GiB, SizeSpec(size=1)) == [EXTENT]


def test_explicit_percentage() -> None:
    assert sizes([10 * GiB, 1000 * MiB], 5 * GiB, SizeSpec(percent=10)) == [GiB, 100 * MiB]


def test_explicit_size_that_does_not_fit_is_refused_not_shrunk() -> None:
    with pytest.raises(NoSpaceError) as info:
        sizes([10 * GiB, 10 * GiB], 3 * GiB, SizeSpec(size=2 * GiB))
    assert info.value.exit_code == ExitCode.NO_SPACE
    assert "vg0" in str(info.value)
    assert "--snapshot-size" in str(info.value)


def test_explicit_size_exactly_the_free_space_fits() -> None:
    assert sizes([10 * GiB], GiB, SizeSpec(size=GiB)) == [GiB]


def test_default_is_20_percent_when_it_fits() -> None:
    assert sizes([10 * GiB, 5 * GiB], 10 * GiB) == [2 * GiB, GiB]


def test_default_is_rounded_up_to_the_extent() -> None:
    # 20% of 101 MiB is 20.2 MiB: 6 extents of 4 MiB
    assert sizes([101 * MiB], GiB) == [24 * MiB]
    # a tiny origin still gets one extent
    assert sizes([MiB], GiB) == [EXTENT]


def test_default_is_shrunk_to_fit() -> None:
    got = sizes([10 * GiB, 10 * GiB], 2 * GiB)
    assert got == [GiB, GiB]
    got = sizes([10 * GiB, 30 * GiB], 6 * GiB + 3 * MiB)
    assert sum(got) <= 6 * GiB + 3 * MiB
    assert all(s % EXTENT == 0 for s in got)
    assert got[1] > got[0]  # shrunk in proportion
    assert all(
        s >= o * MIN_SNAPSHOT_SHARE / 100 for s, o in zip(got, [10 * GiB, 30 * GiB], strict=True)
    )


def test_default_is_refused_below_5_percent() -> None:
    # 5% of 10 GiB is 512 MiB; only 400 MiB free
    with pytest.raises(NoSpaceError) as info:
        sizes([10 * GiB], 400 * MiB)
    assert "--snapshot-size" in str(info.value)
    # just enough for 5%
    assert sizes([10 * GiB], 512 * MiB) == [512 * MiB]


def test_no_free_space_at_all() -> None:
    with pytest.raises(NoSpaceError):
        sizes([10 * GiB], 0)
    with pytest.raises(NoSpaceError):
        sizes([10 * GiB], 0, SizeSpec(size=EXTENT))


def test_no_thick_origins_need_nothing() -> None:
    assert sizes([], 0) == []


def test_hundred_percent_means_a_snapshot_that_cannot_overflow() -> None:
    origin = 16 * MiB
    (got,) = sizes([origin], 10 * GiB, SizeSpec(percent=100))
    # the whole origin plus its exception table (16 B per 4 KiB chunk) and header
    assert got >= origin + origin // 256 + 4096
    assert got % (4 * MiB) == 0
