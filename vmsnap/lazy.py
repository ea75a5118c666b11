"""Modules loaded on first use.

Every ``vmsnap`` run starts a Python interpreter; importing all the commands'
modules (libvirt, zstandard, LVM...) for a run that needs one of them cost a
third of a quick command's time, and much more under emulation.  The CLI binds
its command modules with :func:`lazy`: the module object exists at once, and
its code runs when an attribute is first read.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy(name: str) -> ModuleType:
    """``name``, imported now if already loaded, else on first attribute access."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
