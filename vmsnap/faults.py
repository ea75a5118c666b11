"""Failpoints: named places where a test can stop vmsnap dead.

With ``VMSNAP_FAILPOINT=<name>`` in the environment, vmsnap sends itself
SIGSTOP when it reaches that place, so a test can observe the state (a paused
guest, a half-written image) and then ``kill -9`` it.  Without the variable a
failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = ("window", "snapshotted", "streaming", "publishing", "collecting")


def point(name: str) -> None:
    if os.environ.get("VMSNAP_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGSTOP)
