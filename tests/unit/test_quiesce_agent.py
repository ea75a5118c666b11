"""The guest-agent edge of the quiesce window: which agent failures mean "the
freeze may still happen", the thaw that follows a timed-out freeze, and
VMSNAP_AGENT_TIMEOUT.  The real agent is in tests/agent; here a stand-in
Domain (our own boundary) scripts the answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmsnap import quiesce, virt
from vmsnap.errors import ExitCode, LeftBehindError, QuiesceError, UsageError
from vmsnap.journal import Journal, load_left
from vmsnap.models import QuiesceMode
from vmsnap.quiesce import quiesced
from vmsnap.virt import AgentTimeout

# The live XML's agent channel, as libvirt 9.0 prints it for a running qemu guest
CHANNEL = """<domain type='qemu' id='1'><name>g</name><devices>
    <channel type='unix'>
<source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-1-g/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='{state}'/>
      <alias name='channel0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
  </devices></domain>"""


@pytest.mark.parametrize("state", ["connected", "disconnected"])
def test_agent_channel_state(state: str) -> None:
    assert virt.parse_agent_channel(CHANNEL.format(state=state)) == state


def test_no_agent_channel() -> None:
    xml = (
        "<domain><devices><channel type='pty'><target type='serial'/></channel></devices></domain>"
    )
    assert virt.parse_agent_channel(xml) is None


@pytest.mark.parametrize(("text", "seconds"), [(None, 30), ("5", 5), ("1", 1)])
def test_agent_timeout(monkeypatch: pytest.MonkeyPatch, text: str | None, seconds: int) -> None:
    if text is None:
        monkeypatch.delenv("VMSNAP_AGENT_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("VMSNAP_AGENT_TIMEOUT", text)
    assert quiesce.agent_timeout() == seconds


@pytest.mark.parametrize("text", ["0", "-3", "2.5", "soon", ""])
def test_a_bad_agent_timeout_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("VMSNAP_AGENT_TIMEOUT", text)
    with pytest.raises(UsageError, match="VMSNAP_AGENT_TIMEOUT"):
        quiesce.agent_timeout()


class HungAgent:
    """A running guest whose freeze times out and whose first ``busy`` thaws do too."""

    name, uuid = "g", "6c1b7f3e-2d4a-4f0e-9b8a-3e5d1c2f4a7b"

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.thaws = 0
        self.suspended = False

    def state(self) -> str:
        return "paused" if self.suspended else "running"

    def set_agent_timeout(self, seconds: int) -> None:
        self.timeout = seconds

    def freeze(self) -> int:
        raise AgentTimeout("guest agent of g did not answer: Guest agent not available for now")

    def thaw(self) -> int:
        self.thaws += 1
        if self.thaws <= self.busy:
            raise AgentTimeout("guest agent of g did not answer: Guest agent not available")
        return 1

    def suspend(self) -> None:
        self.suspended = True

    def resume(self) -> None:
        self.suspended = False


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Journal:
    monkeypatch.setenv("VMSNAP_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("VMSNAP_AGENT_TIMEOUT", "1")
    monkeypatch.setattr(quiesce, "THAW_PAUSE", 0.01)
    return Journal.start()


def enter(dom: HungAgent, mode: QuiesceMode, journal: Journal) -> None:
    with quiesced(dom, mode, journal, "qemu:///system"):  # type: ignore[arg-type]
        pytest.fail("the window opened")


def test_a_timed_out_freeze_is_thawed_then_reported(journal: Journal) -> None:
    dom = HungAgent(busy=2)
    with pytest.raises(QuiesceError) as info:
        enter(dom, QuiesceMode.FREEZE, journal)
    assert info.value.exit_code == ExitCode.QUIESCE
    assert "did not answer fs-freeze within 1 s; thawed it again" in str(info.value)
    assert dom.thaws == 3  # until a thaw was answered
    assert load_left() is not None
    assert load_left().guests == []  # type: ignore[union-attr]


def test_auto_pauses_once_a_timed_out_freeze_is_thawed(journal: Journal) -> None:
    dom = HungAgent(busy=1)
    with quiesced(dom, QuiesceMode.AUTO, journal, "qemu:///system") as window:  # type: ignore[arg-type]
        assert dom.state() == "paused"
    assert (window.used, dom.thaws, dom.state()) == ("pause", 2, "running")


def test_a_thaw_never_answered_is_left_behind_and_kept_in_the_journal(journal: Journal) -> None:
    dom = HungAgent(busy=10**9)
    with pytest.raises(LeftBehindError) as info:
        enter(dom, QuiesceMode.AUTO, journal)
    assert info.value.exit_code == ExitCode.LEFT_BEHIND
    assert "g may be left frozen" in str(info.value)
    assert not dom.suspended  # a guest in doubt is not paused on top
    left = load_left()
    assert left is not None
    assert [(g.name, g.action) for g in left.guests] == [("g", "freeze")]


class SlowThaw(HungAgent):
    """A guest whose freeze is answered, and whose first ``busy`` thaws time out
    (or, with ``refuse``, are refused outright)."""

    def __init__(self, busy: int, refuse: bool = False) -> None:
        super().__init__(busy)
        self.refuse = refuse

    def freeze(self) -> int:
        return 1

    def thaw(self) -> int:
        if self.refuse:
            self.thaws += 1
            raise virt.LibvirtError("thawing g: domain is not running")
        return super().thaw()


def test_a_thaw_that_times_out_at_the_end_of_the_window_is_tried_again(journal: Journal) -> None:
    dom = SlowThaw(busy=2)
    with quiesced(dom, QuiesceMode.FREEZE, journal, "qemu:///system") as window:  # type: ignore[arg-type]
        assert window.used == "freeze"
    assert dom.thaws == 3  # until a thaw was answered
    assert load_left().guests == []  # type: ignore[union-attr]


@pytest.mark.parametrize(("dom", "thaws"), [(SlowThaw(busy=10**9), None), (SlowThaw(1, True), 1)])
def test_an_end_of_window_thaw_never_answered_is_left_behind_in_the_journal(
    journal: Journal, dom: SlowThaw, thaws: int | None
) -> None:
    with pytest.raises(LeftBehindError) as info:
        with quiesced(dom, QuiesceMode.FREEZE, journal, "qemu:///system"):  # type: ignore[arg-type]
            pass
    assert info.value.exit_code == ExitCode.LEFT_BEHIND
    assert "could not release g after freeze" in str(info.value)
    if thaws is not None:  # refused outright: not tried again
        assert dom.thaws == thaws
    else:
        assert dom.thaws > 2  # tried again for the agent timeout (1 s)
    left = load_left()
    assert left is not None
    assert [(g.name, g.action) for g in left.guests] == [("g", "freeze")]
