"""Guest backups for the lab's restore and clone tests, made by ``vmsnap backup``
into a repository (format 3)."""

from __future__ import annotations

from pathlib import Path

from labkit import backups_of, chunk_files, new_repo, vmsnap


def repository(tmp_path: Path) -> Path:
    """``tmp_path/dest``, a repository made the first time it is asked for."""
    dest = tmp_path / "dest"
    return dest if dest.exists() else new_repo(tmp_path)


def backed_up(tmp_path: Path, guest: str, uri: str) -> Path:
    """A new backup of ``guest`` (of the test-driver node ``uri``); its folder,
    REPO/backups/<guest>/<time>."""
    dest = repository(tmp_path)
    run = vmsnap("backup", guest, "--dest", str(dest), "--connect", uri)
    assert run.returncode == 0, run.stderr
    return backups_of(dest, guest)[-1]


def chunk_file(folder: Path, target: str, n: int = 0) -> Path:
    """The file of chunk ``n`` of disk ``target`` of the backup ``folder``."""
    return chunk_files(folder.parents[2], folder, target)[n]
