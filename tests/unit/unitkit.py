"""Helpers for the unit tests: LVM output captured in the lab, test-driver XML."""

from __future__ import annotations

import hashlib

CHUNK_BYTES = 4 << 20


def chunk_sha256(data: bytes) -> str:
    """The volume digest computed the slow, obvious way (see vmsnap.digest)."""
    lines = b"".join(
        hashlib.sha256(data[i : i + CHUNK_BYTES]).hexdigest().encode() + b"\n"
        for i in range(0, len(data), CHUNK_BYTES)
    )
    return hashlib.sha256(lines).hexdigest()


# Captured from LVM 2.03 in the lab, without --binary:
# lvs --reportformat json --units b --nosuffix -o <lvm.LV_COLUMNS>
LVS_LAB_REPORT = """\
{"report":[{"lv":[
 {"lv_name":"pool","vg_name":"labvg","lv_path":"","lv_dm_path":"/dev/mapper/labvg-pool",\
"lv_size":"134217728","lv_attr":"twi-aotz--","segtype":"thin-pool","origin":"","pool_lv":"",\
"data_percent":"0.00","snap_percent":"","metadata_percent":"10.45","lv_tags":"",\
"lv_snapshot_invalid":"unknown"},
 {"lv_name":"snap1","vg_name":"labvg","lv_path":"/dev/labvg/snap1",\
"lv_dm_path":"/dev/mapper/labvg-snap1","lv_size":"16777216","lv_attr":"swi-a-s---",\
"segtype":"linear","origin":"thick","pool_lv":"","data_percent":"0.00","snap_percent":"0.00",\
"metadata_percent":"","lv_tags":"vmsnap","lv_snapshot_invalid":""},
 {"lv_name":"snap2","vg_name":"labvg","lv_path":"/dev/labvg/snap2",\
"lv_dm_path":"/dev/mapper/labvg-snap2","lv_size":"67108864","lv_attr":"Vwi-a-tz-k",\
"segtype":"thin","origin":"thin","pool_lv":"pool","data_percent":"0.00","snap_percent":"0.00",\
"metadata_percent":"","lv_tags":"vmsnap","lv_snapshot_invalid":"unknown"},
 {"lv_name":"thick","vg_name":"labvg","lv_path":"/dev/labvg/thick",\
"lv_dm_path":"/dev/mapper/labvg-thick","lv_size":"67108864","lv_attr":"owi-a-s---",\
"segtype":"linear","origin":"","pool_lv":"","data_percent":"","snap_percent":"",\
"metadata_percent":"","lv_tags":"","lv_snapshot_invalid":"unknown"},
 {"lv_name":"thin","vg_name":"labvg","lv_path":"/dev/labvg/thin",\
"lv_dm_path":"/dev/mapper/labvg-thin","lv_size":"67108864","lv_attr":"Vwi-a-tz--",\
"segtype":"thin","origin":"","pool_lv":"pool","data_percent":"0.00","snap_percent":"0.00",\
"metadata_percent":"","lv_tags":"","lv_snapshot_invalid":"unknown"}]}]}
"""

LOGICAL_POOL = (
    "<pool type='logical'><name>{name}</name><source><name>{vg}</name>"
    "<format type='lvm2'/></source><target><path>/dev/{vg}</path></target></pool>"
)
DIR_POOL = (
    "<pool type='dir'><name>{name}</name><target><path>/var/lib/images</path></target></pool>"
)


def domain_xml(name: str, disks: str, *, kind: str = "kvm", runstate: int | None = None) -> str:
    """A test-driver guest; ``runstate`` 3 makes it paused."""
    ostype = "xen" if kind == "xen" else "hvm"
    state = f"<test:runstate>{runstate}</test:runstate>" if runstate is not None else ""
    return (
        f"<domain type='{kind}' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        f"<name>{name}</name><memory>524288</memory><os><type>{ostype}</type></os>"
        f"<devices>{disks}</devices>{state}</domain>"
    )
