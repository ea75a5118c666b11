"""A stand-in for the LVM tools, run as ``lvs``, ``vgs``, ``lvcreate`` and
``lvremove`` through symbolic links on PATH, so that vmsnap's own runner runs
real processes.  The volumes live in the JSON file $FAKE_LVM_STATE: one VG,
vg0, with the LVs listed there; ``lvcreate --snapshot`` adds one (its device
does not exist: reading it fails) and ``lvremove`` drops it.  With
$FAKE_LVM_DEVICES set, ``lvcreate`` of a new LV makes its "device" a file of
its size in that folder (``lvremove`` deletes it), and ``lvchange`` changes
its tags."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

MiB = 1 << 20


def volume(name: str, size: int, *, origin: str = "", tags: str = "") -> dict[str, str]:
    return {
        "lv_name": name,
        "vg_name": "vg0",
        "lv_path": f"/dev/vg0/{name}",
        "lv_dm_path": f"/dev/mapper/vg0-{name.replace('-', '--')}",
        "lv_size": str(size),
        "lv_attr": "swi-a-s---" if origin else "-wi-ao----",
        "segtype": "linear",
        "origin": origin,
        "pool_lv": "",
        "data_percent": "",
        "snap_percent": "0.00" if origin else "",
        "metadata_percent": "",
        "lv_tags": tags,
        "lv_snapshot_invalid": "",
    }


def _wanted(row: dict[str, str], names: list[str]) -> bool:
    full = f"{row['vg_name']}/{row['lv_name']}"
    tags = row["lv_tags"].split(",")
    return not names or any(n in (row["vg_name"], full) or n[1:] in tags for n in names)


def _report(kind: str, rows: list[dict[str, Any]]) -> None:
    print(json.dumps({"report": [{kind: rows}]}))


def _value(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def _new_volume(argv: list[str]) -> dict[str, str]:
    """A new (not a snapshot) LV, thick or thin: a file of its size is its device."""
    name = _value(argv, "--name")
    thin = "--thin" in argv
    size = int(_value(argv, "--virtualsize" if thin else "--size").rstrip("b"))
    row = volume(
        name, size, tags=",".join(a for i, a in enumerate(argv) if argv[i - 1] == "--addtag")
    )
    row["lv_path"] = str(Path(os.environ["FAKE_LVM_DEVICES"]) / name)
    row["lv_attr"] = "Vwi-a-tz--" if thin else "-wi-a-----"
    row["segtype"] = "thin" if thin else "linear"
    with open(row["lv_path"], "wb") as dev:
        dev.truncate(size)
    return row


def _retag(rows: list[dict[str, str]], argv: list[str], names: list[str]) -> None:
    gone = {a for i, a in enumerate(argv) if argv[i - 1] == "--deltag"}
    added = [a for i, a in enumerate(argv) if argv[i - 1] == "--addtag"]
    for r in rows:
        if f"vg0/{r['lv_name']}" in names:
            tags = [t for t in r["lv_tags"].split(",") if t and t not in gone]
            r["lv_tags"] = ",".join(tags + added)


def main(tool: str, argv: list[str]) -> int:
    state = Path(os.environ["FAKE_LVM_STATE"])
    rows: list[dict[str, str]] = json.loads(state.read_text())
    names = argv[argv.index("--") + 1 :] if "--" in argv else []
    if tool == "lvs":
        _report("lv", [r for r in rows if _wanted(r, names)])
    elif tool == "vgs":
        size = str(1 << 30)
        _report(
            "vg",
            [{"vg_name": "vg0", "vg_size": size, "vg_free": size, "vg_extent_size": "4194304"}],
        )
    elif tool == "lvcreate" and "--snapshot" not in argv:
        rows.append(_new_volume(argv))
    elif tool == "lvcreate":
        origin = names[0].split("/")[1]
        tags = ",".join(argv[i + 1] for i, a in enumerate(argv) if a == "--addtag")
        size = int(_value(argv, "--size").rstrip("b"))
        rows.append(volume(_value(argv, "--name"), size, origin=origin, tags=tags))
    elif tool == "lvchange":
        _retag(rows, argv, names)
    elif tool == "lvremove":
        for r in rows:
            if f"vg0/{r['lv_name']}" in names and os.environ.get("FAKE_LVM_DEVICES"):
                Path(r["lv_path"]).unlink(missing_ok=True)
        rows = [r for r in rows if f"vg0/{r['lv_name']}" not in names]
    else:
        print(f"{tool}: not faked", file=sys.stderr)
        return 5
    state.write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[0]).name, sys.argv[1:]))
