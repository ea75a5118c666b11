"""Failpoints: named places where a test can stop vmsnap dead.

With ``VMSNAP_FAILPOINT=<name>`` in the environment, vmsnap sends itself
SIGSTOP when it reaches that place, so a test can observe the state (a paused
guest, a half-written image or LV) and then ``kill -9`` it.  Without the
variable a failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

POINTS = ("window", "snapshotted", "streaming", "publishing", "copying", "collecting")


def point(name: str) -> None:
    if os.environ.get("VMSNAP_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGSTOP)


def after_first(name: str, advance: Callable[[int], None]) -> Callable[[int], None]:
    """``advance`` (a progress callback), stopping at ``name`` after its first call:
    the data is then partly written."""
    first = [True]

    def wrapped(nbytes: int) -> None:
        advance(nbytes)
        if first[0]:
            first[0] = False
            point(name)

    return wrapped
