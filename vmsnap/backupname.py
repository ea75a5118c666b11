"""Which backup restore and clone read: a local folder, or a name in a repository.

A user names a backup in two ways (vmsnap.repo.refs): by its folder
``REPO/backups/<guest>/<time>``, or by the guest's NAME in the repository REPO
(``--dest``, or ``dest`` in the configuration file) and an optional ``--at
TIME`` (the newest backup when absent).  The CLI decides which of the two the
user meant; this finds the backup, reading only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmsnap.errors import UsageError
from vmsnap.repo import refs
from vmsnap.repo.location import Dest, open_dest
from vmsnap.repo.refs import BackupRef


def is_path(text: str) -> bool:
    """A guest's name never holds a ``/``: anything that does is a folder."""
    return "/" in text or text in (".", "..")


@dataclass(frozen=True)
class BackupName:
    text: str  # the BACKUP (or SOURCE) argument as typed
    repo: Dest | None = None  # a NAME in this repository; None: ``text`` is a folder
    at: str | None = None  # with ``repo``: the time, or its start

    def resolve(self) -> BackupRef:
        if self.repo is None:
            return _folder(Path(self.text))
        if is_path(self.text):
            raise UsageError(
                f"{self.text}: with --dest (or --at) name the backup by its guest's name",
                hint="or name its folder alone: REPO/backups/<guest>/<time>",
            )
        return refs.find(open_dest(self.repo), self.text, self.at)

    def __str__(self) -> str:
        if self.repo is None:
            return self.text
        return f"{self.text} in {self.repo}" + (f" at {self.at}" if self.at else "")


def _folder(path: Path) -> BackupRef:
    """``REPO/backups/<guest>/<time>``, published; a repository or a guest's
    folder names no single backup."""
    located = refs.locate(path)
    if located.stamp is None:
        raise UsageError(
            f"{path} is not one backup's folder: name REPO/backups/<guest>/<time>",
            hint="or the guest's name with --dest REPO [--at TIME]",
        )
    (ref,) = located.refs()
    return ref
