"""The core modules the commands call, bound lazily in one place.

Each command loads only the modules it uses (see vmsnap/lazy.py): importing the
CLI must not import libvirt, zstandard or the job modules.  mypy sees plain
imports, re-exported through ``__all__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmsnap.lazy import lazy

__all__ = [
    "backup",
    "catalog",
    "checkpoint",
    "cleanup",
    "clone",
    "discover",
    "imagecmd",
    "restore",
    "retention",
    "snapshots",
    "store",
    "verify",
    "virt",
]

if TYPE_CHECKING:
    from vmsnap import (
        backup,
        catalog,
        checkpoint,
        cleanup,
        clone,
        discover,
        imagecmd,
        restore,
        retention,
        snapshots,
        store,
        verify,
        virt,
    )
else:  # a module object at once; its code runs on first attribute access
    for _name in __all__:
        globals()[_name] = lazy(f"vmsnap.{_name}")
