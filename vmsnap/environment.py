"""The ``VMSNAP_*`` variables that tune a run, parsed one way.

The CLI reads them when it builds a command's settings (``Hooks``,
``GuardSettings``); no settings class reads them behind a default.  A value
that is not a number, or is below its minimum, is a usage error naming it.
"""

from __future__ import annotations

import os

from vmsnap.errors import UsageError


def env_number(name: str, default: float, minimum: float, *, whole: bool = False) -> float:
    """``$name`` as a number of at least ``minimum`` (``whole``: an integer);
    ``default`` when it is not set."""
    text = os.environ.get(name)
    if text is None:
        return default
    kind = "a whole number" if whole else "a number"
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not {kind}") from None
    if value < minimum:
        raise UsageError(f"{name}={text!r} must be at least {minimum:g}")
    return float(value)
