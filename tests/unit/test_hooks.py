"""Hooks on the host: run-parts order and names, the environment, veto and
notify phases, the timeout, and the refusal of hooks root does not own alone.

Hooks must live in root-owned folders no one else can write, all the way up:
/tmp is world-writable, so the hooks folders here are made under /run."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from vmsnap import checkpoint, hooks
from vmsnap.errors import ExitCode, HookError, UsageError
from vmsnap.hooks import Hooks
from vmsnap.models import LogicalVolume

LOGGER = """#!/bin/sh
echo "$(basename "$0") $1 $VMSNAP_PHASE $VMSNAP_DOMAIN $VMSNAP_LABEL" >> {log}
echo "said by $(basename "$0")"
"""


def put(folder: Path, name: str, text: str, mode: int = 0o755) -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_hooks_run_in_name_order_with_the_phase_and_environment(
    hook_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "log"
    for name in ("20-second", "10-first", "30_third"):
        put(hook_dir, name, LOGGER.format(log=log))
    for skipped in ("40-x.sh", "50.bak", ".hidden", "60-noexec"):
        put(hook_dir, skipped, LOGGER.format(log=log), 0o755 if skipped != "60-noexec" else 0o644)
    (hook_dir / "70-folder").mkdir()
    scope = Hooks(hook_dir).scope(VMSNAP_DOMAIN="web01").bind(VMSNAP_LABEL="pre")
    with caplog.at_level("INFO", logger="vmsnap"):
        scope.run(hooks.POST_SNAPSHOT)
    assert log.read_text().splitlines() == [
        f"{n} post-snapshot post-snapshot web01 pre" for n in ("10-first", "20-second", "30_third")
    ]
    assert "hook 10-first (post-snapshot): said by 10-first" in caplog.text


def test_inherited_vmsnap_variables_are_not_passed_on(
    hook_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMSNAP_LABEL", "stale")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    out = tmp_path / "env"
    put(hook_dir, "10-env", f'#!/bin/sh\necho "${{VMSNAP_LABEL-unset}} $SOMETHING_ELSE" > {out}\n')
    Hooks(hook_dir).scope().run(hooks.JOB_END)
    assert out.read_text() == "unset kept\n"


def test_a_failing_hook_vetoes_a_veto_phase_and_stops_the_rest(
    hook_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    put(hook_dir, "10-no", "#!/bin/sh\necho vetoed >&2\nexit 3\n")
    put(hook_dir, "20-log", LOGGER.format(log=log))
    with pytest.raises(HookError, match="10-no at pre-quiesce exited with status 3") as info:
        Hooks(hook_dir).scope(VMSNAP_DOMAIN="web01").run(hooks.PRE_QUIESCE)
    assert info.value.exit_code == ExitCode.HOOK
    assert not log.exists()


def test_a_failing_hook_elsewhere_is_logged_and_the_rest_run(
    hook_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "log"
    put(hook_dir, "10-no", "#!/bin/sh\nexit 1\n")
    put(hook_dir, "20-log", LOGGER.format(log=log))
    Hooks(hook_dir).scope(VMSNAP_DOMAIN="web01").run(hooks.BACKUP_ABORT)  # never raises
    assert log.read_text().startswith("20-log backup-abort")
    assert "10-no at backup-abort exited with status 1" in caplog.text


def test_a_hook_past_its_timeout_is_killed_with_its_children(
    hook_dir: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child"
    put(hook_dir, "10-slow", f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nwait\n")
    started = time.monotonic()
    with pytest.raises(HookError, match=r"did not finish within 0\.5 s"):
        Hooks(hook_dir, timeout=0.5).scope().run(hooks.JOB_START)
    assert time.monotonic() - started < 10
    child = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the hook's child outlived the timeout")


@pytest.mark.parametrize("mode", [0o775, 0o757], ids=["group-writable", "other-writable"])
def test_a_hook_others_can_write_is_refused(hook_dir: Path, tmp_path: Path, mode: int) -> None:
    log = tmp_path / "log"
    put(hook_dir, "10-open", LOGGER.format(log=log), mode)
    with pytest.raises(HookError, match=r"10-open refused: .* writable by group or others"):
        Hooks(hook_dir).scope().run(hooks.PRE_QUIESCE)
    assert not log.exists()


def test_a_hook_not_owned_by_root_is_refused(hook_dir: Path, tmp_path: Path) -> None:
    script = put(hook_dir, "10-nobody", LOGGER.format(log=tmp_path / "log"))
    os.chown(script, 65534, 65534)
    with pytest.raises(HookError, match="belongs to uid 65534, not root"):
        Hooks(hook_dir).scope().run(hooks.PRE_ROLLBACK)


def test_a_hooks_folder_under_a_world_writable_one_is_refused(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="vmsnap-hooks-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        put(folder, "10-x", "#!/bin/sh\n")
        with pytest.raises(HookError, match=r"/tmp is writable by group or others \(mode 1777\)"):
            Hooks(folder).scope().run(hooks.JOB_START)
    finally:
        shutil.rmtree(folder)


def test_no_hooks_folder_means_no_hooks(tmp_path: Path) -> None:
    Hooks(tmp_path / "missing").scope().run(hooks.PRE_QUIESCE)
    hooks.NO_HOOKS.run(hooks.PRE_QUIESCE)


def test_hooks_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMSNAP_HOOKS_DIR", "/srv/hooks")
    monkeypatch.setenv("VMSNAP_HOOK_TIMEOUT", "12")
    assert Hooks.from_environment() == Hooks(Path("/srv/hooks"), 12.0)
    assert Hooks.from_environment(Path("/x")).directory == Path("/x")
    monkeypatch.setenv("VMSNAP_HOOK_TIMEOUT", "soon")
    with pytest.raises(UsageError):
        Hooks.from_environment()


# ---------------------------------------------------------------- checkpoint values


def test_durations_and_labels() -> None:
    assert checkpoint.parse_duration("90m") == 5400
    assert checkpoint.parse_duration("1d12h") == 36 * 3600
    for bad in ("", "3", "3x", "0h", "1h 2m"):
        with pytest.raises(UsageError):
            checkpoint.parse_duration(bad)
    assert checkpoint.check_label("pre-upgrade_1.2+x") == "pre-upgrade_1.2+x"
    for bad in ("-x", "a b", "a,b", "a@b", "x" * 65):
        with pytest.raises(UsageError):
            checkpoint.check_label(bad)


def _lv(name: str, **kw: object) -> LogicalVolume:
    base: dict[str, object] = {
        "vg": "vg0",
        "name": name,
        "path": f"/dev/vg0/{name}",
        "dm_path": "",
        "size": 8 << 20,
        "attr": "swi-a-s---",
        "segtype": "linear",
    }
    base.update(kw)
    return LogicalVolume(**base)  # type: ignore[arg-type]


def test_checkpoints_are_grouped_from_their_tags() -> None:
    cp_tags = ("vmsnap_checkpoint", "vmsnap_cp_uuid:u1", "vmsnap_cp_label:pre")
    volumes = [
        _lv("root", attr="owi-a-s---", size=32 << 20),
        _lv("pool", attr="twi-aotz--", segtype="thin-pool", data_percent=91.0),
        _lv("data", attr="Vwi-a-tz--", segtype="thin", pool="pool"),
        _lv(
            "root-ckpt-1",
            origin="root",
            snap_percent=25.0,
            tags=(*cp_tags, "vmsnap_cp_target:vda", "vmsnap_cp_created:100"),
        ),
        _lv(
            "data-ckpt-1",
            origin="data",
            segtype="thin",
            pool="pool",
            attr="Vwi-a-tz-k",
            tags=(*cp_tags, "vmsnap_cp_target:vdb", "vmsnap_cp_name:web01"),
        ),
        _lv("root-ckpt-2", origin="root", attr="swi-I-s---", tags=("vmsnap_checkpoint",)),
        _lv("root-vmsnap-1", origin="root", tags=("vmsnap",)),
    ]
    first, second = checkpoint.group_checkpoints(volumes)
    assert (first.label, second.name, second.label) == ("", "web01", "pre")
    assert first.invalid
    assert not second.invalid
    vda, vdb = second.disks
    assert (vda.target, vda.fill, vda.cow_left) == ("vda", 25.0, 6 << 20)
    assert vda.origin is not None
    assert vda.origin.name == "root"
    assert (vdb.target, vdb.fill, vdb.pool_fill) == ("vdb", None, 91.0)
    assert second.created == 100
    assert second.expires is None
