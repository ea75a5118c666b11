"""Text renderings that more than one command prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmsnap.retention import GuestPrune


def ago(seconds: float) -> str:
    """A duration in its largest whole unit: 3d, 5h, 12m, 40s."""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def print_prune(plans: list[GuestPrune], dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for p in plans:
        for b, why in p.keep:
            print(f"{p.guest}: keep    {b.directory.name}  ({', '.join(why)})")
        for b in p.remove:
            print(f"{p.guest}: {verb} {b.directory.name}")
        for path in p.partials:
            print(f"{p.guest}: {verb} {path.name} (unpublished)")
        for b in p.ignored:
            reason = b.problem or f"last verify {b.verified.status if b.verified else '?'}"
            print(f"{p.guest}: ignored {b.directory.name} (not a good backup: {reason})")
