"""Log levels: what ``-v`` and ``-vv`` add.

INFO (shown by default) is what a run reports anyway: summaries, notes,
hook output.  VERBOSE (``-v``) adds each step of a job: every command that
changes the system (``lvcreate``, ``lvremove``...), freeze, thaw, pause and
resume, snapshots with their sizes, each disk's time and rate.  DEBUG
(``-vv``) adds every command run, read-only ones included, with its status
and duration.  ``--log-file`` gets the same lines as standard error, at INFO
or more whatever ``-q`` says.
"""

from __future__ import annotations

import logging

VERBOSE = 15
logging.addLevelName(VERBOSE, "VERBOSE")
