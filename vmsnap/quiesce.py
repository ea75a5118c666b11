"""The quiesce window: freeze or pause a guest, and release exactly what we did.

The whole window runs with signals deferred: a Ctrl-C that lands inside it is
honoured once the guest has been thawed or resumed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from vmsnap.environment import env_number
from vmsnap.errors import LeftBehindError, LibvirtError, QuiesceError
from vmsnap.journal import GuestEntry, Journal
from vmsnap.logs import VERBOSE
from vmsnap.models import QuiesceMode
from vmsnap.signals import GATE
from vmsnap.virt import RUNNING_STATES, AgentTimeout, AgentUnavailable, Domain

log = logging.getLogger(__name__)

AGENT_TIMEOUT = 30  # seconds a guest-agent call may block (VMSNAP_AGENT_TIMEOUT)
THAW_PAUSE = 0.5  # seconds between attempts to thaw after a freeze timed out


def agent_timeout() -> int:
    """``VMSNAP_AGENT_TIMEOUT`` tunes it (the agent tests use it)."""
    return int(env_number("VMSNAP_AGENT_TIMEOUT", AGENT_TIMEOUT, 1, whole=True))


@dataclass
class Window:
    """What the window did: filled in as it runs, read after it closes."""

    requested: QuiesceMode
    used: str = "none"  # freeze, pause or none
    state_before: str = ""
    frozen_filesystems: int | None = None
    seconds: float = 0.0
    note: str = ""


class _Recorder:
    """Notes in the journal, before acting, what the window is about to do."""

    def __init__(self, dom: Domain, journal: Journal | None, uri: str) -> None:
        self.dom, self.journal, self.uri = dom, journal, uri

    def intend(self, action: str) -> None:
        if self.journal is not None:
            self.journal.note_guest(GuestEntry(self.uri, self.dom.name, self.dom.uuid, action))

    def done(self) -> None:
        if self.journal is not None:
            self.journal.forget_guest(self.dom.uuid)


def _freeze(dom: Domain, window: Window, rec: _Recorder) -> None:
    timeout = agent_timeout()
    dom.set_agent_timeout(timeout)
    rec.intend("freeze")
    try:
        window.frozen_filesystems = dom.freeze()
    except AgentTimeout as exc:
        _thaw_after_timeout(dom, timeout, exc)
        rec.done()
        raise AgentUnavailable(
            f"guest agent of {dom.name} did not answer fs-freeze within {timeout} s; "
            "thawed it again"
        ) from exc
    except LibvirtError:
        rec.done()
        raise
    window.used = "freeze"
    log.log(VERBOSE, "froze %d filesystems of %s", window.frozen_filesystems, dom.name)


def _thaw_after_timeout(dom: Domain, timeout: int, exc: AgentTimeout) -> None:
    """A freeze the agent did not answer in time may still happen in the guest:
    thaw until a thaw is answered (the agent answers in order, so that thaw
    comes after the freeze), for up to ``timeout`` seconds more.  Failing that,
    the guest may be frozen: the journal keeps it for ``vmsnap cleanup``."""
    try:
        thawed = _thaw_until_answered(dom, timeout)
    except LibvirtError:
        raise LeftBehindError(
            f"guest agent of {dom.name} did not answer fs-freeze within {timeout} s, "
            f"nor fs-thaw in the {timeout} s after: {dom.name} may be left frozen",
            hint="vmsnap cleanup thaws it once its agent answers",
        ) from exc
    log.log(VERBOSE, "thawed %d filesystems of %s after the freeze timed out", thawed, dom.name)


def _thaw_until_answered(dom: Domain, timeout: int) -> int:
    """Thaw, and try again until an agent that timed out answers, for up to
    ``timeout`` seconds; the last error when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return dom.thaw()
        except LibvirtError as thaw_exc:
            log.debug("%s", thaw_exc)
            if time.monotonic() >= deadline:
                raise
        time.sleep(THAW_PAUSE)


def _pause(dom: Domain, window: Window, rec: _Recorder) -> None:
    rec.intend("pause")
    try:
        dom.suspend()
    except LibvirtError:
        rec.done()
        raise
    window.used = "pause"
    log.log(VERBOSE, "paused %s", dom.name)


def _enter(dom: Domain, window: Window, rec: _Recorder) -> None:
    mode, state = window.requested, window.state_before
    if mode is QuiesceMode.NONE:
        return
    if state not in RUNNING_STATES:
        window.note = f"guest {state}: nothing to quiesce"
        return
    if mode is QuiesceMode.PAUSE:
        _pause(dom, window, rec)
        return
    try:
        _freeze(dom, window, rec)
    except AgentUnavailable as exc:
        if mode is QuiesceMode.FREEZE:
            raise QuiesceError(str(exc), hint="use --quiesce auto or pause") from exc
        log.info("%s; pausing %s instead", exc, dom.name)
        window.note = "guest agent unavailable, paused instead"
        _pause(dom, window, rec)


def _release(dom: Domain, window: Window) -> None:
    if window.used == "freeze":
        log.log(VERBOSE, "thawed %d filesystems of %s", _thaw(dom), dom.name)
    elif window.used == "pause":
        dom.resume()
        log.log(VERBOSE, "resumed %s", dom.name)


def _thaw(dom: Domain) -> int:
    """The end of the window: a thaw that times out is tried again, within the
    agent timeout, as after a freeze that timed out; a thaw the agent refuses
    outright is not."""
    try:
        return dom.thaw()
    except AgentTimeout as exc:
        log.info("%s; trying fs-thaw again", exc)
        return _thaw_until_answered(dom, agent_timeout())


@contextmanager
def quiesced(
    dom: Domain, mode: QuiesceMode, journal: Journal | None = None, uri: str = ""
) -> Iterator[Window]:
    """Quiesce ``dom`` for the body only; thaw or resume only what we froze or
    paused.  With a journal, each action is recorded before it is taken and
    forgotten once undone, for ``vmsnap cleanup`` after a crash."""
    window = Window(requested=mode)
    rec = _Recorder(dom, journal, uri)
    with GATE.deferred():
        start = time.monotonic()
        window.state_before = dom.state()
        _enter(dom, window, rec)
        body_error: BaseException | None = None
        try:
            yield window
        except BaseException as exc:
            body_error = exc
            raise
        finally:
            window.seconds = time.monotonic() - start
            _release_or_raise(dom, window, body_error)
            if window.used != "none":
                rec.done()


def _release_or_raise(dom: Domain, window: Window, body_error: BaseException | None) -> None:
    """A guest left paused or frozen outranks any other error; the other one is
    kept as a note so that it is not lost."""
    try:
        _release(dom, window)
    except LibvirtError as exc:
        left = LeftBehindError(
            f"could not release {dom.name} after {window.used}: {exc}",
            hint=f"check it now: virsh domstate {dom.name}",
        )
        if body_error is not None:
            left.add_note(f"the backup had already failed: {body_error}")
        raise left from exc
