"""vmsnap list: guests, their disks, and which disks are LVs."""

from __future__ import annotations

import logging

import typer

from vmsnap.cli import jsondoc
from vmsnap.cli.core import discover, virt
from vmsnap.cli.options import ConnectOpt, DomainsArg, JsonOpt
from vmsnap.cli.session import Session
from vmsnap.errors import LvmError
from vmsnap.models import Guest, human_size

log = logging.getLogger("vmsnap")


def _inventory() -> discover.Inventory:
    try:
        return discover.Inventory.load()
    except LvmError as exc:
        log.warning("LVM unavailable, volumes not resolved: %s", exc)
        return discover.Inventory([])


def _print_guest(guest: Guest) -> None:
    print(f"{guest.name}  {guest.state}  {guest.hypervisor}  {guest.uuid}")
    for d in guest.disks:
        volume = d.volume.full_name if d.volume else "-"
        kind = d.volume.kind if d.volume else "-"
        why = "backup" if d.reason is None else f"skip: {d.reason}"
        if d.reason and not d.skippable:
            why = f"not an LV: {d.reason} (backup refuses the guest unless --exclude'd)"
        print(
            f"  {d.target:<6} {d.spec.source or '-':<36} {volume:<28} "
            f"{human_size(d.size):>10}  {kind:<5}  {why}"
        )


def list_cmd(
    ctx: typer.Context,
    domains: DomainsArg = None,
    connect: ConnectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List guests, their state and disks, and which disks are LVs (thick or thin)."""
    with virt.connection(Session.of(ctx).uri(connect)) as conn:
        doms = [conn.domain(n) for n in domains] if domains else conn.domains()
        inventory = _inventory()
        guests = [discover.describe(d, inventory, conn) for d in doms]
    if as_json:
        jsondoc.emit([jsondoc.guest(g) for g in guests])
    else:
        for guest in guests:
            _print_guest(guest)
