"""The run journal: what this run paused, froze and created, on disk.

Written atomically (temporary file, fsync, rename, fsync of the folder) before
each action it records, so that after a crash ``vmsnap cleanup`` knows exactly
which guests a dead run left paused or frozen, which files it left and which
new LVs it was still filling; it never touches a guest or an LV the journal
does not name.  Removed when a run ends.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vmsnap.errors import DestinationError

STATE_DIR = "/var/lib/vmsnap"
JOURNAL = "journal.json"


def state_dir() -> Path:
    return Path(os.environ.get("VMSNAP_STATE_DIR", STATE_DIR))


@dataclass
class GuestEntry:
    uri: str
    name: str
    uuid: str
    action: str  # "pause" or "freeze": what the run did (or was about to do)


@dataclass
class JournalData:
    pid: int
    started: float
    guests: list[GuestEntry] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)  # "VG/LV": new LVs not yet complete


class Journal:
    """One run's journal file; every change is written through at once."""

    def __init__(self, path: Path, data: JournalData) -> None:
        self.path = path
        self.data = data

    @classmethod
    def start(
        cls, carry: list[GuestEntry] | None = None, volumes: list[str] | None = None
    ) -> Journal:
        """A new journal; ``carry`` and ``volumes`` keep a dead run's guests and
        new LVs that cleanup could not release or remove, so that a later
        cleanup tries again."""
        folder = state_dir()
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(f"cannot create state folder {folder}: {exc.strerror}") from exc
        data = JournalData(
            pid=os.getpid(),
            started=time.time(),
            guests=list(carry or []),
            volumes=list(volumes or []),
        )
        journal = cls(folder / JOURNAL, data)
        journal.save()
        return journal

    def save(self) -> None:
        try:
            write_atomically(self.path, json.dumps(asdict(self.data), indent=1).encode())
        except OSError as exc:
            raise DestinationError(f"cannot write journal {self.path}: {exc.strerror}") from exc

    def note_guest(self, entry: GuestEntry) -> None:
        self.data.guests.append(entry)
        self.save()

    def forget_guest(self, uuid: str) -> None:
        self.data.guests = [g for g in self.data.guests if g.uuid != uuid]
        self.save()

    def note_volume(self, name: str) -> None:
        """Before ``lvcreate``: the new LV ``VG/LV`` may exist from now on."""
        self.data.volumes.append(name)
        self.save()

    def forget_volume(self, name: str) -> None:
        """The LV is complete (and kept), or gone."""
        self.data.volumes = [v for v in self.data.volumes if v != name]
        self.save()

    def close(self) -> None:
        """The run is over: the journal goes, unless a guest it names could not
        be released or a new LV it names removed (then ``vmsnap cleanup``
        still has work to do)."""
        if self.data.guests or self.data.volumes:
            self.save()
        else:
            self.path.unlink(missing_ok=True)


def load_left() -> JournalData | None:
    """The journal a dead run left, if any (call under the run lock)."""
    path = state_dir() / JOURNAL
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DestinationError(f"unreadable journal {path}: {exc}") from exc
    return JournalData(
        pid=int(raw.get("pid", 0)),
        started=float(raw.get("started", 0.0)),
        guests=[GuestEntry(**g) for g in raw.get("guests", [])],
        volumes=[str(v) for v in raw.get("volumes", [])],
    )


def discard_left() -> None:
    (state_dir() / JOURNAL).unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
