"""lvm.py's pure half: names, device-mapper names, paths, the report parsers
(on output captured from LVM 2.03) and the argv builders."""

from __future__ import annotations

import itertools
import json
import signal

import pytest

from vmsnap import lvm, runner
from vmsnap.errors import Interrupted, UsageError
from vmsnap.models import LogicalVolume
from vmsnap.signals import GATE

RUN_ID = "abcd1234"

# every valid name of up to five characters over a, b and the dash
SHORT_NAMES = [
    name
    for n in range(1, 6)
    for name in ("".join(p) for p in itertools.product("a-b", repeat=n))
    if lvm.valid_name(name)
]


# ---------------------------------------------------------------- dm names


@pytest.mark.parametrize(
    ("vg", "lv", "dm"),
    [
        ("vg0", "root", "vg0-root"),
        ("my-vg", "my-lv", "my--vg-my--lv"),
        ("a-", "b", "a---b"),
        ("a", "b-", "a-b--"),
        ("a--b", "c", "a----b-c"),
        ("vg0", "db-01", "vg0-db--01"),
    ],
)
def test_dm_name_and_split_are_inverse(vg: str, lv: str, dm: str) -> None:
    assert lvm.dm_name(vg, lv) == dm
    assert lvm.split_dm_name(dm) == (vg, lv)


def test_split_inverts_dm_name_for_every_short_name_pair() -> None:
    assert len(SHORT_NAMES) > 200
    wrong = [
        (vg, lv)
        for vg in SHORT_NAMES
        for lv in SHORT_NAMES
        if lvm.split_dm_name(lvm.dm_name(vg, lv)) != (vg, lv)
    ]
    assert wrong == []


@pytest.mark.parametrize("dm", ["", "novgsep", "-lv", "vg-", "vg--lv", "a--"])
def test_split_dm_name_without_a_single_separator_is_none(dm: str) -> None:
    assert lvm.split_dm_name(dm) is None


@pytest.mark.parametrize("dm", ["vg-lv-real", "vg0-web01-cow", "vg-pool-tpool"])
def test_split_dm_name_only_returns_names_that_map_back(dm: str) -> None:
    split = lvm.split_dm_name(dm)
    assert split is None or lvm.dm_name(*split) == dm


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/dev/vg0/root", ("vg0", "root")),
        ("/dev/HostVG/XenGuest2", ("HostVG", "XenGuest2")),
        ("/dev/my-vg/my-lv", ("my-vg", "my-lv")),
        ("/dev/mapper/vg0-root", ("vg0", "root")),
        ("/dev/mapper/my--vg-my--lv", ("my-vg", "my-lv")),
        ("/dev/mapper/vg0-db--01", ("vg0", "db-01")),
        ("/dev/sda", None),
        ("/dev/sda1", None),
        ("/var/lib/x.qcow2", None),
        ("/var/lib/libvirt/images/x.qcow2", None),
        ("/dev/disk/by-id/dm-name-vg0-root", None),
        ("/dev/mapper/control", None),
        ("/dev//root", None),
        ("/dev/vg0/", None),
        ("dev/vg0/root", None),
        ("/dev/-vg/root", None),
        ("/dev/vg0/..", None),
        ("/dev/vg0/snapshot1", None),
        ("", None),
    ],
)
def test_path_to_vg_lv(path: str, expected: tuple[str, str] | None) -> None:
    assert lvm.path_to_vg_lv(path) == expected


# ---------------------------------------------------------------- valid names


@pytest.mark.parametrize(
    "name", ["vg0", "a", "my-vg", "a-", "A+b_c.d", "x" * lvm.NAME_MAX, "lv.", "_lv", "+"]
)
def test_valid_names(name: str) -> None:
    assert lvm.valid_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "-lv",
        "x" * (lvm.NAME_MAX + 1),
        "snapshot",
        "snapshot0",
        "pvmove1",
        "lv_tmeta",
        "data_tdata",
        "lv_rimage_0",
        "lv_mlog",
        "lv_cdata",
        "lv_corig",
        "lv_vorigin",
        "lv_pmspare",
        "with space",
        "with/slash",
        "colon:",
        "nul\0",
        "tab\t",
        "utf8é",
        "star*",
        "at@",
    ],
)
def test_invalid_names(name: str) -> None:
    assert not lvm.valid_name(name)


def test_find_volume_rejects_invalid_names_without_asking_lvm() -> None:
    # no lvs is run for a name LVM would refuse anyway
    assert lvm.find_volume("-vg", "root") is None
    assert lvm.find_volume("vg0", "a b") is None


# ---------------------------------------------------------------- snapshot names


def _assert_usable(vg: str, name: str) -> None:
    assert lvm.valid_name(name), name
    assert len(name) <= lvm.NAME_MAX
    assert len(lvm.dm_name(vg, name)) <= lvm.NAME_MAX
    assert name.endswith(f"-vmsnap-{RUN_ID}")


def test_snapshot_name_normal() -> None:
    assert lvm.snapshot_name("vg0", "web01-root", RUN_ID) == f"web01-root-vmsnap-{RUN_ID}"
    assert lvm.snapshot_name("vg0", "web01", RUN_ID, kind="clone") == f"web01-clone-{RUN_ID}"


@pytest.mark.parametrize(
    ("vg", "origin"),
    [
        ("vg0", "x" * lvm.NAME_MAX),
        ("vg0", "a-" * 63 + "a"),
        ("my-long-vg-name", "a-b" * 42 + "c"),
        ("v" * 90, "root" * 10),
        ("vg0", "x" * 100),
    ],
)
def test_snapshot_name_of_a_long_origin_fits_lvm_and_dm(vg: str, origin: str) -> None:
    assert len(origin) <= lvm.NAME_MAX
    _assert_usable(vg, lvm.snapshot_name(vg, origin, RUN_ID))


def test_long_origins_sharing_a_prefix_get_different_names() -> None:
    first = "d" * 120 + "-disk1"
    second = "d" * 120 + "-disk2"
    a = lvm.snapshot_name("vg0", first, RUN_ID)
    b = lvm.snapshot_name("vg0", second, RUN_ID)
    assert a != b
    _assert_usable("vg0", a)
    _assert_usable("vg0", b)


def test_snapshot_name_is_deterministic() -> None:
    origin = "y" * 125
    assert lvm.snapshot_name("vg0", origin, RUN_ID) == lvm.snapshot_name("vg0", origin, RUN_ID)


def test_snapshot_name_refuses_a_vg_name_that_leaves_no_room() -> None:
    with pytest.raises(UsageError, match="too long"):
        lvm.snapshot_name("v" * 120, "root", RUN_ID)


# ---------------------------------------------------------------- report parsers


def test_parse_lvs_on_captured_lab_output(lvs_report: str) -> None:
    volumes = {v.name: v for v in lvm.parse_lvs(lvs_report)}
    assert sorted(volumes) == ["pool", "snap1", "snap2", "thick", "thin"]

    assert volumes["thick"] == LogicalVolume(
        vg="labvg",
        name="thick",
        path="/dev/labvg/thick",
        dm_path="/dev/mapper/labvg-thick",
        size=67108864,
        attr="owi-a-s---",
        segtype="linear",
    )
    thin = volumes["thin"]
    assert (thin.is_thin, thin.kind, thin.pool, thin.origin) == (True, "thin", "pool", None)
    assert (thin.data_percent, thin.snap_percent, thin.metadata_percent) == (0.0, 0.0, None)
    assert thin.full_name == "labvg/thin"

    snap1 = volumes["snap1"]  # a COW snapshot of a thick LV reports segtype linear
    assert (snap1.origin, snap1.kind, snap1.size, snap1.tags) == (
        "thick",
        "thick",
        16777216,
        ("vmsnap",),
    )
    assert snap1.snapshot_invalid is False

    snap2 = volumes["snap2"]
    assert (snap2.origin, snap2.kind, snap2.pool, snap2.tags) == (
        "thin",
        "thin",
        "pool",
        ("vmsnap",),
    )
    assert snap2.attr.endswith("k")  # activation skip: why lvcreate needs -K

    pool = volumes["pool"]
    assert (pool.path, pool.dm_path, pool.segtype) == ("", "/dev/mapper/labvg-pool", "thin-pool")
    assert pool.metadata_percent == pytest.approx(10.45)
    assert pool.snap_percent is None
    assert not any(v.snapshot_invalid for v in volumes.values())


def _with_field(report: str, name: str, field: str, value: str) -> str:
    doc = json.loads(report)
    for row in doc["report"][0]["lv"]:
        if row["lv_name"] == name:
            row[field] = value
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("value", "invalid"), [("1", True), ("0", False), ("invalid", True), ("", False)]
)
def test_parse_lvs_snapshot_invalid(lvs_report: str, value: str, invalid: bool) -> None:
    """With --binary (what vmsnap passes) LVM reports 0/1; without it, words."""
    text = _with_field(lvs_report, "snap1", "lv_snapshot_invalid", value)
    (snap1,) = [v for v in lvm.parse_lvs(text) if v.name == "snap1"]
    assert snap1.snapshot_invalid is invalid


def test_parse_lvs_several_tags_and_unknown_percent(lvs_report: str) -> None:
    text = _with_field(lvs_report, "snap1", "lv_tags", "vmsnap,vmsnap-run-abcd1234")
    text = _with_field(text, "snap1", "snap_percent", "-1")
    (snap1,) = [v for v in lvm.parse_lvs(text) if v.name == "snap1"]
    assert snap1.tags == ("vmsnap", "vmsnap-run-abcd1234")
    assert snap1.snap_percent is None


def test_parse_lvs_empty_report() -> None:
    # what lvs prints on a host without volume groups (captured on this host)
    empty = (
        '  {\n      "report": [\n          {\n              "lv": [\n'
        "              ]\n          }\n      ]\n  }\n"
    )
    assert lvm.parse_lvs(empty) == []


def test_parse_vgs() -> None:
    # the same report shape as lvs, for lvm.VG_COLUMNS
    text = json.dumps(
        {
            "report": [
                {
                    "vg": [
                        {
                            "vg_name": "labvg",
                            "vg_size": "1254096896",
                            "vg_free": "1048576000",
                            "vg_extent_size": "4194304",
                        },
                        {"vg_name": "empty", "vg_size": "", "vg_free": "", "vg_extent_size": ""},
                    ]
                }
            ]
        }
    )
    labvg, empty = lvm.parse_vgs(text)
    assert (labvg.name, labvg.size, labvg.free, labvg.extent_size) == (
        "labvg",
        1254096896,
        1048576000,
        4194304,
    )
    assert (empty.size, empty.free, empty.extent_size) == (0, 0, 0)


# ---------------------------------------------------------------- argv builders


@pytest.fixture
def volumes(lvs_report: str) -> dict[str, LogicalVolume]:
    return {v.name: v for v in lvm.parse_lvs(lvs_report)}


def test_create_snapshot_argv_thick(volumes: dict[str, LogicalVolume]) -> None:
    argv = lvm.create_snapshot_argv(
        volumes["thick"], "thick-vmsnap-x", 16777216, ("vmsnap", "vmsnap-run-x")
    )
    assert argv == [
        "lvcreate",
        "--snapshot",
        "--name",
        "thick-vmsnap-x",
        "--addtag",
        "vmsnap",
        "--addtag",
        "vmsnap-run-x",
        "--size",
        "16777216b",
        "--",
        "labvg/thick",
    ]
    assert "--ignoreactivationskip" not in argv


def test_create_snapshot_argv_thin(volumes: dict[str, LogicalVolume]) -> None:
    argv = lvm.create_snapshot_argv(volumes["thin"], "thin-vmsnap-x", None, ("vmsnap",))
    assert argv == [
        "lvcreate",
        "--snapshot",
        "--name",
        "thin-vmsnap-x",
        "--addtag",
        "vmsnap",
        "--ignoreactivationskip",
        "--",
        "labvg/thin",
    ]
    assert not any(a in ("--size", "-L", "--extents", "-l") for a in argv)


def test_create_snapshot_argv_thick_needs_a_size(volumes: dict[str, LogicalVolume]) -> None:
    with pytest.raises(ValueError, match="size"):
        lvm.create_snapshot_argv(volumes["thick"], "s", None, ())


def test_remove_argv(volumes: dict[str, LogicalVolume]) -> None:
    assert lvm.remove_argv(volumes["snap1"]) == [
        "lvremove",
        "--force",
        "--yes",
        "--",
        "labvg/snap1",
    ]


def test_lvs_argv() -> None:
    base = ["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "--binary"]
    assert lvm.lvs_argv() == [*base, "-o", lvm.LV_COLUMNS]
    assert lvm.lvs_argv("lv_tags=vmsnap", ("@vmsnap",)) == [
        *base,
        "-o",
        lvm.LV_COLUMNS,
        "--select",
        "lv_tags=vmsnap",
        "--",
        "@vmsnap",
    ]


def test_lv_columns_match_what_the_parser_reads(lvs_report: str) -> None:
    row = json.loads(lvs_report)["report"][0]["lv"][0]
    assert lvm.LV_COLUMNS.split(",") == list(row)


@pytest.mark.parametrize(
    ("size", "sized"), [(550000, "550400b"), (4 << 20, "4194304b"), (1, "512b")]
)
def test_a_new_volume_is_asked_for_in_whole_sectors(size: int, sized: str) -> None:
    # lvcreate refuses a byte count that is not a whole number of sectors
    assert lvm.create_volume_argv("vg0", "new", size, None)[5] == sized
    assert lvm.create_volume_argv("vg0", "new", size, "pool")[5] == sized


# ---------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("n", "unit", "up"), [(0, 512, 0), (1, 512, 512), (512, 512, 512), (513, 512, 1024)]
)
def test_round_up_to_a_whole_unit(n: int, unit: int, up: int) -> None:
    assert lvm.round_up(n, unit) == up


def test_a_growth_step_is_a_share_of_the_origin_in_whole_extents() -> None:
    mib = 1 << 20
    assert lvm.growth_step(100 * mib, 4 * mib) == 20 * mib
    assert lvm.growth_step(101 * mib, 4 * mib) == 24 * mib  # 20.2 MiB up to 6 extents
    assert lvm.growth_step(4 * mib, 4 * mib) == 4 * mib  # at least one extent
    assert lvm.growth_step(100 * mib, 4 * mib, share=50.0) == 52 * mib


@pytest.mark.parametrize(
    ("value", "attr", "invalid"),
    [("0", "swi-a-s---", False), ("1", "swi-a-s---", True), ("0", "swi-I-s---", True)],
)
def test_an_overflowed_snapshot_is_invalid(
    lvs_report: str, value: str, attr: str, invalid: bool
) -> None:
    """By the report's flag or, where LVM only marks lv_attr, by its 'I'."""
    text = _with_field(lvs_report, "snap1", "lv_snapshot_invalid", value)
    text = _with_field(text, "snap1", "lv_attr", attr)
    (snap1,) = [v for v in lvm.parse_lvs(text) if v.name == "snap1"]
    assert lvm.is_invalid(snap1) is invalid


def test_a_new_volume_carries_its_tags_from_lvcreate() -> None:
    argv = lvm.create_volume_argv("vg0", "new", 1 << 20, None, (lvm.UNFINISHED_TAG,))
    assert argv[argv.index("--addtag") + 1] == "vmsnap_unfinished"
    assert argv[-2:] == ["--", "vg0"]


def test_a_signal_that_arrives_while_lvcreate_runs_leaves_no_lv(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The signal is held while lvcreate runs and raised when it is done: the LV
    it made must be removed then, not left (it was, before)."""
    made: list[str] = []

    def execute(argv: list[str], _timeout: float) -> runner.Completed:
        if argv[0] == "lvcreate":
            made.append(argv[argv.index("--name") + 1])
            GATE.pending = signal.SIGTERM  # arrived meanwhile, held by the gate
        elif argv[0] == "lvremove":
            made.remove(argv[-1].split("/")[1])
        return runner.Completed(tuple(argv), 0, "", "")

    def find(vg: str, name: str) -> LogicalVolume | None:
        path = f"/dev/{vg}/{name}"
        return LogicalVolume(vg, name, path, "", 1 << 20, "", "linear") if name in made else None

    monkeypatch.setattr(runner, "_execute", execute)
    monkeypatch.setattr(lvm, "require_free", lambda *_a: None)
    monkeypatch.setattr(lvm, "find_volume", find)
    try:
        with pytest.raises(Interrupted), lvm.new_volume("vg0", "web02-vda", 1 << 20):
            pytest.fail("the body must not run")
    finally:
        GATE.pending = None
    assert made == []
