"""The device writer on a regular file standing in for a block device (the lab
runs it on real LVs): aligned chunks go through O_DIRECT, odd tails do not,
seeks leave regions untouched, and nothing is written past the end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmsnap.devio import ALIGN, open_device
from vmsnap.digest import CHUNK
from vmsnap.errors import DestinationError


@pytest.fixture
def device(tmp_path: Path) -> Path:
    path = tmp_path / "dev"
    path.write_bytes(b"\xee" * (3 * CHUNK))
    return path


def test_aligned_chunks_go_direct_and_tails_do_not(device: Path) -> None:
    first, tail = os.urandom(CHUNK), os.urandom(ALIGN + 100)
    with open_device(str(device)) as sink:
        if sink.direct_fd is None:
            pytest.skip("this filesystem refuses O_DIRECT")
        sink.write(first)
        sink.seek(CHUNK, os.SEEK_CUR)  # a region left as it was
        sink.write(tail)
        assert sink.position == 2 * CHUNK + len(tail)
    data = device.read_bytes()
    assert data[:CHUNK] == first
    assert data[CHUNK : 2 * CHUNK] == b"\xee" * CHUNK
    assert data[2 * CHUNK : 2 * CHUNK + len(tail)] == tail
    assert data[2 * CHUNK + len(tail) :] == b"\xee" * (CHUNK - len(tail))


def test_unaligned_position_then_aligned_length(device: Path) -> None:
    with open_device(str(device)) as sink:
        sink.write(b"x" * 100)
        sink.write(b"y" * ALIGN)  # aligned length at an unaligned offset: buffered
    assert device.read_bytes()[: 100 + ALIGN] == b"x" * 100 + b"y" * ALIGN


def test_nothing_is_written_past_the_end(device: Path) -> None:
    with open_device(str(device)) as sink:
        sink.seek(3 * CHUNK - 10)
        with pytest.raises(DestinationError, match="larger"):
            sink.write(b"z" * 11)
    assert device.read_bytes() == b"\xee" * (3 * CHUNK)


def test_a_missing_device_is_a_destination_error(tmp_path: Path) -> None:
    with pytest.raises(DestinationError, match="cannot open"), open_device(str(tmp_path / "no")):
        pass
