"""How the core reports progress: a small protocol the CLI implements (tqdm or
plain lines).  The core never imports tqdm."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def job(self, label: str, total: int) -> None:
        """A job of ``total`` bytes starts (a guest's disks, an image)."""

    def item(self, label: str, total: int | None) -> None:
        """One disk or stream of ``total`` bytes starts."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more bytes of the current item are done."""

    def stored(self, new: int, deduplicated: int) -> None:
        """Of the current item's bytes read so far, ``new`` were stored new and
        ``deduplicated`` the repository held already."""

    def item_done(self) -> None: ...

    def job_done(self) -> None: ...


class NoProgress:
    """Discards every report (``--no-progress``, ``--json`` pipelines)."""

    def job(self, label: str, total: int) -> None:  # noqa: ARG002 - protocol
        return None

    def item(self, label: str, total: int | None) -> None:  # noqa: ARG002 - protocol
        return None

    def advance(self, nbytes: int) -> None:  # noqa: ARG002 - protocol
        return None

    def stored(self, new: int, deduplicated: int) -> None:  # noqa: ARG002 - protocol
        return None

    def item_done(self) -> None:
        return None

    def job_done(self) -> None:
        return None
