"""Freeze a guest through vmsnap's quiesce window, with a run journal, print
"frozen N" and hold the window open until killed: vmsnap dying while a guest
is frozen.

    python hold_frozen.py URI GUEST      (VMSNAP_STATE_DIR names the journal's folder)
"""

from __future__ import annotations

import sys
import time

from vmsnap import virt
from vmsnap.journal import Journal
from vmsnap.models import QuiesceMode
from vmsnap.quiesce import quiesced


def main(uri: str, name: str) -> None:
    journal = Journal.start()
    with virt.connection(uri) as conn:
        dom = conn.domain(name)
        with quiesced(dom, QuiesceMode.FREEZE, journal, conn.uri) as window:
            print(f"frozen {window.frozen_filesystems}", flush=True)
            time.sleep(600)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
