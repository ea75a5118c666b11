"""Text renderings that more than one command prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmsnap.models import human_size

if TYPE_CHECKING:
    from vmsnap.repo.gc import GcReport
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
            print(f"{p.guest}: keep    {b.stamp}  ({', '.join(why)})")
        for b in p.remove:
            print(f"{p.guest}: {verb} {b.stamp}  ({human_size(b.unique_bytes)} unique)")
        for b in p.ignored:
            reason = b.problem or f"last verify {b.verified.status if b.verified else '?'}"
            print(f"{p.guest}: ignored {b.stamp} (not a good backup: {reason})")


def print_gc(report: GcReport | None) -> None:
    """What the garbage collection after a prune freed (or would free)."""
    if report is None:
        print("garbage collection: not run (a backup could not be removed)")
        return
    verb = "would free" if report.dry_run else "freed"
    print(
        f"garbage collection: {verb} {report.garbage} of {report.chunks} chunk(s), "
        f"{human_size(report.garbage_bytes)}; {report.manifests} backup(s) remain"
    )
    for prefix in report.orphans:
        print(f"  {'would remove' if report.dry_run else 'removed'} {prefix} (never published)")
