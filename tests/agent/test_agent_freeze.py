"""The freeze path against a real qemu-guest-agent (tests/agent/run).

The guest's agent is real: it freezes an ext4 filesystem on a virtio disk, runs
a fsfreeze hook, and can be made to hang.  The host has no LVM, so vmsnap's
quiesce layer (vmsnap.quiesce over vmsnap.virt) is driven in-process around an
empty window, and watched from outside through the agent itself; crash
recovery goes through the real ``vmsnap cleanup`` command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest
from agentkit import URI, VMSNAP, freeze_status, read_guest_file, write_guest_file
from conftest import Guest

from vmsnap import virt
from vmsnap.errors import ExitCode, LeftBehindError, QuiesceError
from vmsnap.journal import Journal, load_left
from vmsnap.models import QuiesceMode
from vmsnap.quiesce import quiesced
from vmsnap.repo import manifest as rmanifest

pytestmark = pytest.mark.agent
HERE = Path(__file__).parent


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private journal folder and run lock; the environment for a vmsnap process."""
    env = {
        "VMSNAP_STATE_DIR": str(tmp_path / "state"),
        "VMSNAP_LOCK_FILE": str(tmp_path / "vmsnap.lock"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ, **env)


def hook_calls(guest: Guest) -> list[str]:
    return read_guest_file(guest.dom, "/run/hook.log").split()


def journal_actions() -> list[str]:
    left = load_left()
    return [g.action for g in left.guests] if left else []


def cleanup(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VMSNAP, "cleanup", "--connect", URI],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def wait_for_status(guest: Guest, want: str, seconds: float) -> None:
    """Until the agent says ``want`` (it does not answer while a hook hangs)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if freeze_status(guest.dom) == want:
                return
        except libvirt.libvirtError:
            pass
        assert time.monotonic() < deadline, f"the guest was not {want} within {seconds} s"
        time.sleep(0.5)


def hang_next_freeze(guest: Guest, seconds: int) -> None:
    """The guest's fsfreeze hook will sleep this long before the next freeze."""
    write_guest_file(guest.dom, "/run/hang", str(seconds))


@pytest.mark.parametrize("mode", [QuiesceMode.FREEZE, QuiesceMode.AUTO])
def test_the_filesystem_is_frozen_for_the_window_and_thawed_after(
    guest: Guest, state: dict[str, str], mode: QuiesceMode
) -> None:
    calls = len(hook_calls(guest))
    journal = Journal.start()
    with virt.connection(URI) as conn:
        dom = conn.domain(guest.name)
        with quiesced(dom, mode, journal, conn.uri) as window:
            assert freeze_status(guest.dom) == "frozen"
            assert journal_actions() == ["freeze"]
        assert freeze_status(guest.dom) == "thawed"
    assert (window.used, window.frozen_filesystems) == ("freeze", 1)  # the ext4 on vda
    assert hook_calls(guest)[calls:] == ["freeze", "thaw"]
    assert journal_actions() == []
    record = rmanifest.quiesce_doc(window)  # what the backup's manifest records
    assert (record["mode"], record["frozen_filesystems"]) == ("freeze", 1)


@pytest.mark.usefixtures("state")
def test_auto_without_an_agent_channel_pauses_instead(no_channel_guest: str) -> None:
    with virt.connection(URI) as conn:
        dom = conn.domain(no_channel_guest)
        with quiesced(dom, QuiesceMode.AUTO, Journal.start(), conn.uri) as window:
            assert dom.state() == "paused"
            assert journal_actions() == ["pause"]
        assert dom.state() == "running"
    assert (window.used, window.frozen_filesystems) == ("pause", None)
    assert window.note == "guest agent unavailable, paused instead"
    assert journal_actions() == []


@pytest.mark.usefixtures("state")
def test_auto_with_an_agent_that_is_not_connected_pauses_at_once(
    silent_channel_guest: str,
) -> None:
    with virt.connection(URI) as conn:
        dom = conn.domain(silent_channel_guest)
        start = time.monotonic()
        with quiesced(dom, QuiesceMode.AUTO, Journal.start(), conn.uri) as window:
            assert dom.state() == "paused"
        assert time.monotonic() - start < 5  # no waiting for an agent that is not there
        assert dom.state() == "running"
    assert window.used == "pause"


@pytest.mark.usefixtures("state")
@pytest.mark.parametrize(
    ("which", "libvirt_says"),
    [
        ("no_channel_guest", "argument unsupported: QEMU guest agent is not configured"),
        (
            "silent_channel_guest",
            "Guest agent is not responding: QEMU guest agent is not connected",
        ),
    ],
)
def test_freeze_without_an_agent_fails_and_the_guest_keeps_running(
    request: pytest.FixtureRequest, which: str, libvirt_says: str
) -> None:
    name = request.getfixturevalue(which)
    with virt.connection(URI) as conn:
        dom = conn.domain(name)
        with pytest.raises(QuiesceError) as info:
            with quiesced(dom, QuiesceMode.FREEZE, Journal.start(), conn.uri):
                pytest.fail("the window opened without a freeze")
        assert dom.state() == "running"
    assert info.value.exit_code == ExitCode.QUIESCE
    assert str(info.value) == (
        f"guest agent of {name} unavailable: {libvirt_says} (use --quiesce auto or pause)"
    )
    assert journal_actions() == []


def test_a_hung_agent_times_out_and_the_guest_is_thawed(
    guest: Guest, state: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMSNAP_AGENT_TIMEOUT", "3")
    hang_next_freeze(guest, 5)  # the freeze answers 2 s after the timeout
    calls = len(hook_calls(guest))
    start = time.monotonic()
    with virt.connection(URI) as conn:
        dom = conn.domain(guest.name)
        with pytest.raises(QuiesceError) as info:
            with quiesced(dom, QuiesceMode.FREEZE, Journal.start(), conn.uri):
                pytest.fail("the window opened after the freeze timed out")
    took = time.monotonic() - start
    assert info.value.exit_code == ExitCode.QUIESCE
    assert str(info.value) == (
        f"guest agent of {guest.name} did not answer fs-freeze within 3 s; thawed it again "
        "(use --quiesce auto or pause)"
    )
    assert 5 <= took < 9  # the timeout, then thaws until the late freeze was undone
    assert freeze_status(guest.dom) == "thawed"
    assert guest.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert hook_calls(guest)[calls:][:2] == ["freeze", "thaw"]  # it did freeze, late
    assert journal_actions() == []


def test_auto_with_a_hung_agent_thaws_then_pauses(
    guest: Guest, state: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMSNAP_AGENT_TIMEOUT", "2")
    hang_next_freeze(guest, 3)
    with virt.connection(URI) as conn:
        dom = conn.domain(guest.name)
        with quiesced(dom, QuiesceMode.AUTO, Journal.start(), conn.uri) as window:
            assert dom.state() == "paused"
            assert journal_actions() == ["pause"]
        assert dom.state() == "running"
    assert (window.used, window.note) == ("pause", "guest agent unavailable, paused instead")
    assert freeze_status(guest.dom) == "thawed"


def test_a_thaw_that_times_out_at_the_end_of_the_window_is_tried_again(
    guest: Guest, state: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMSNAP_AGENT_TIMEOUT", "3")
    write_guest_file(guest.dom, "/run/hang-thaw", "4")  # the thaw answers 1 s late
    calls = len(hook_calls(guest))
    journal = Journal.start()
    with virt.connection(URI) as conn:
        dom = conn.domain(guest.name)
        with quiesced(dom, QuiesceMode.FREEZE, journal, conn.uri) as window:
            assert freeze_status(guest.dom) == "frozen"
            start = time.monotonic()  # the thaw starts as the window ends
    took = time.monotonic() - start
    journal.close()
    assert window.used == "freeze"
    assert 4 <= took < 9  # the timeout, then thaws until one was answered
    assert freeze_status(guest.dom) == "thawed"
    assert hook_calls(guest)[calls:][:2] == ["freeze", "thaw"]
    assert journal_actions() == []


def test_an_agent_hung_past_the_thaw_leaves_a_journal_that_cleanup_acts_on(
    guest: Guest, state: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMSNAP_AGENT_TIMEOUT", "2")
    hang_next_freeze(guest, 10)  # longer than the timeout and the thaw after it
    journal = Journal.start()
    with virt.connection(URI) as conn:
        dom = conn.domain(guest.name)
        with pytest.raises(LeftBehindError) as info:
            with quiesced(dom, QuiesceMode.FREEZE, journal, conn.uri):
                pytest.fail("the window opened after the freeze timed out")
    journal.close()
    assert info.value.exit_code == ExitCode.LEFT_BEHIND
    assert str(info.value) == (
        f"guest agent of {guest.name} did not answer fs-freeze within 2 s, nor fs-thaw in the "
        f"2 s after: {guest.name} may be left frozen "
        "(vmsnap cleanup thaws it once its agent answers)"
    )
    assert journal_actions() == ["freeze"]
    wait_for_status(guest, "frozen", 20)  # the late freeze does happen
    done = cleanup(state)
    assert done.returncode == 0, done.stderr
    assert f"thaw guest {guest.name}" in done.stdout
    assert freeze_status(guest.dom) == "thawed"
    assert journal_actions() == []


def test_kill_9_while_frozen_then_cleanup_thaws(guest: Guest, state: dict[str, str]) -> None:
    with subprocess.Popen(
        [sys.executable, str(HERE / "hold_frozen.py"), URI, guest.name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=state,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "frozen 1"
            assert freeze_status(guest.dom) == "frozen"
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
    assert holder.returncode == -signal.SIGKILL
    assert freeze_status(guest.dom) == "frozen"  # nobody thawed it
    journal = json.loads((Path(state["VMSNAP_STATE_DIR"]) / "journal.json").read_text())
    assert [(g["name"], g["action"]) for g in journal["guests"]] == [(guest.name, "freeze")]
    done = cleanup(state)
    assert done.returncode == 0, done.stderr
    assert f"thaw guest {guest.name}" in done.stdout
    assert freeze_status(guest.dom) == "thawed"
    assert guest.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert not (Path(state["VMSNAP_STATE_DIR"]) / "journal.json").exists()
