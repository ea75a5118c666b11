"""Turn SIGINT, SIGTERM and SIGHUP into one error path, and shield critical sections.

While a section is *deferred* (a quiesce window, an LVM command that changes
state, cleanup), a signal is only recorded; it is raised as
:class:`~vmsnap.errors.Interrupted` when the outermost deferred section ends.
So a Ctrl-C never kills ``lvcreate`` half-way, never skips a resume, and a
second Ctrl-C during cleanup does not cut the cleanup short.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from vmsnap.errors import Interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SignalGate:
    def __init__(self) -> None:
        self._depth = 0
        self.pending: int | None = None

    def install(self) -> None:
        """Route the handled signals through this gate (main thread only)."""
        for signum in HANDLED:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._depth:
            if self.pending is None:
                self.pending = signum
            return
        self.pending = signum
        raise Interrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold signals until the block ends; then raise the first one, unless
        another exception is already on its way out (it must not be hidden).
        Signals only reach the main thread: elsewhere this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._depth += 1
        failed = True
        try:
            yield
            failed = False
        finally:
            self._depth -= 1
            if self._depth == 0 and not failed:
                self.raise_pending()

    def raise_pending(self) -> None:
        if self.pending is not None:
            raise Interrupted(self.pending)


GATE = SignalGate()
