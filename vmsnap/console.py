"""The terminal side of the CLI: logging setup and progress display.

On a terminal, tqdm bars (overall and per disk) with bytes, rate and ETA; when
stderr is not a terminal (cron, a pipe), a few plain timestamped lines.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Never, TextIO

if TYPE_CHECKING:  # imported when a bar is drawn: it costs ~25 ms at every start
    from tqdm import tqdm

from vmsnap.errors import UsageError
from vmsnap.logs import VERBOSE
from vmsnap.models import human_size
from vmsnap.progress import NoProgress, Progress

PLAIN_STEPS = 4  # a plain line at each quarter of a disk
log = logging.getLogger(__name__)


_STAMPED = logging.Formatter("%(asctime)s vmsnap %(levelname)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
FILE_LOGGER = "vmsnap.file"  # records for the --log-file only (errors, exit status)


def setup_logging(
    verbosity: int, stream: TextIO | None = None, log_file: Path | None = None
) -> None:
    """Logs on ``stream`` (stderr): plain on a terminal, else timestamped;
    ``verbosity`` -1 (``-q``) warnings and errors, 0 INFO, 1 (``-v``) each step
    too, 2 (``-vv``, ``--debug``) every command too (see vmsnap.logs).  A
    ``log_file`` is appended to, timestamped, at the same level or INFO,
    whichever shows more, whatever ``-q`` says."""
    stream = stream or sys.stderr
    level = {-1: logging.WARNING, 0: logging.INFO, 1: VERBOSE}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("vmsnap: %(message)s") if stream.isatty() else _STAMPED)
    handlers: list[logging.Handler] = [handler]
    if log_file is not None:
        handlers.append(_file_handler(log_file, min(level, logging.INFO)))
    root = logging.getLogger("vmsnap")
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):
            old.close()
    root.handlers[:] = handlers
    root.setLevel(min(h.level for h in handlers))
    root.propagate = False
    only_file = logging.getLogger(FILE_LOGGER)
    only_file.handlers[:] = handlers[1:]
    only_file.propagate = False
    only_file.setLevel(logging.INFO)


def _file_handler(path: Path, level: int) -> logging.Handler:
    try:
        handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot open --log-file {path}: {exc.strerror}") from exc
    handler.setLevel(level)
    handler.setFormatter(_STAMPED)
    return handler


def close_log_file() -> None:
    """Close and drop the --log-file handler (at the end of a run)."""
    for name in ("vmsnap", FILE_LOGGER):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            handler.close()
            logger.removeHandler(handler)


def to_log_file(level: int, text: str) -> None:
    """A line for the log file only: what the CLI prints itself (errors, exit status)."""
    logger = logging.getLogger(FILE_LOGGER)
    if logger.handlers:  # else logging's last resort would print it on stderr
        logger.log(level, "%s", text)


def stored_text(new: int, deduplicated: int) -> str:
    """What a store did with the bytes it read: ``new 4.0 MiB, dedup 28.0 MiB``."""
    return f"new {human_size(new)}, dedup {human_size(deduplicated)}"


class TqdmProgress:
    """Two bars on a terminal: the job (a guest's disks) and the current disk."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.overall: tqdm[Never] | None = None
        self.current: tqdm[Never] | None = None

    def _bar(self, label: str, total: int | None, position: int) -> tqdm[Never]:
        from tqdm import tqdm  # noqa: PLC0415 - see the import at the top

        return tqdm(
            total=total,
            desc=label,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            position=position,
            leave=position == 0,
            file=self.stream,
            dynamic_ncols=True,
            mininterval=0.2,
        )

    def job(self, label: str, total: int) -> None:
        self.overall = self._bar(f"{label} total", total, 0)

    def item(self, label: str, total: int | None) -> None:
        self.current = self._bar(label, total, 1 if self.overall else 0)

    def advance(self, nbytes: int) -> None:
        for bar in (self.current, self.overall):
            if bar is not None:
                bar.update(nbytes)

    def stored(self, new: int, deduplicated: int) -> None:
        if self.current is not None:
            self.current.set_postfix_str(stored_text(new, deduplicated), refresh=False)

    def item_done(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    def job_done(self) -> None:
        self.item_done()
        if self.overall is not None:
            self.overall.close()
            self.overall = None


class PlainProgress:
    """A line when a disk starts, at each quarter, and when it ends (with rate)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.label = ""
        self.total: int | None = None
        self.done = 0
        self.next_step = 1
        self.started = 0.0
        self.counts = ""

    def _line(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        print(f"{stamp} vmsnap progress: {text}", file=self.stream, flush=True)

    def job(self, label: str, total: int) -> None:
        self._line(f"{label}: {human_size(total)} to read")

    def item(self, label: str, total: int | None) -> None:
        self.label, self.total, self.done, self.next_step = label, total, 0, 1
        self.started, self.counts = time.monotonic(), ""
        self._line(f"{label}: started ({human_size(total)})")

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        if not self.total:
            return
        while (
            self.next_step < PLAIN_STEPS and self.done * PLAIN_STEPS >= self.total * self.next_step
        ):
            self._line(f"{self.label}: {100 * self.next_step // PLAIN_STEPS}%{self.counts}")
            self.next_step += 1

    def stored(self, new: int, deduplicated: int) -> None:
        self.counts = f", {stored_text(new, deduplicated)}"

    def item_done(self) -> None:
        seconds = max(time.monotonic() - self.started, 1e-6)
        rate = human_size(int(self.done / seconds))
        self._line(
            f"{self.label}: done, {human_size(self.done)} read in {seconds:.1f} s "
            f"({rate}/s){self.counts}"
        )

    def job_done(self) -> None:
        return None


class LoggedProgress:
    """The display, and a VERBOSE log line for each disk or stream done: its
    size, time and rate (``-v``, and the ``--log-file``, even without progress)."""

    def __init__(self, display: Progress) -> None:
        self.display = display
        self.label = ""
        self.done = 0
        self.started = 0.0
        self.counts = ""

    def job(self, label: str, total: int) -> None:
        self.display.job(label, total)

    def item(self, label: str, total: int | None) -> None:
        self.label, self.done, self.started = label, 0, time.monotonic()
        self.counts = ""
        self.display.item(label, total)

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        self.display.advance(nbytes)

    def stored(self, new: int, deduplicated: int) -> None:
        self.counts = f", {stored_text(new, deduplicated)}"
        self.display.stored(new, deduplicated)

    def item_done(self) -> None:
        self.display.item_done()
        seconds = max(time.monotonic() - self.started, 1e-6)
        size, rate = human_size(self.done), human_size(int(self.done / seconds))
        log.log(VERBOSE, "%s: %s in %.1f s (%s/s)%s", self.label, size, seconds, rate, self.counts)

    def job_done(self) -> None:
        self.display.job_done()


def make_progress(mode: bool | None, stream: TextIO | None = None) -> Progress:
    """``mode`` None: bars on a terminal, plain lines otherwise; True: bars; False: none."""
    return LoggedProgress(_display(mode, stream or sys.stderr))


def _display(mode: bool | None, stream: TextIO) -> Progress:
    if mode is False:
        return NoProgress()
    if mode or stream.isatty():
        return TqdmProgress(stream)
    return PlainProgress(stream)
