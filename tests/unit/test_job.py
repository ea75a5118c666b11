"""The job envelope (vmsnap.job.run_job) on the host: the hook phases around a
job and the run's status, the run lock held throughout, the journal started
with what the cleanup could not release and closed at the end.

Hooks must live in root-owned folders no one else can write, all the way up:
/tmp is world-writable, so the hooks folders here are made under /run."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from vmsnap import cleanup, hooks, journal
from vmsnap.cleanup import CleanupReport
from vmsnap.errors import HookError, Interrupted, LockedError, NotFoundError
from vmsnap.hooks import Hooks, Scope
from vmsnap.job import run_job
from vmsnap.lock import run_lock

RECORD = '#!/bin/sh\necho "$1 ${VMSNAP_VOLUMES-} ${VMSNAP_STATUS-} ${VMSNAP_ERROR-}" >> LOG\n'
STRANDED = journal.GuestEntry(uri="test:///x", name="web01", uuid="u-1", action="freeze")


@pytest.fixture(autouse=True)
def private_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """A private lock and journal; the cleanup of a dead run is stood in for
    (what it does is tested with it); the list tells when it ran."""
    monkeypatch.setenv("VMSNAP_LOCK_FILE", str(tmp_path / "vmsnap.lock"))
    monkeypatch.setenv("VMSNAP_STATE_DIR", str(tmp_path / "state"))
    calls: list[str] = []

    def fake_cleanup() -> CleanupReport:
        with pytest.raises(LockedError):  # the run lock is already held
            with run_lock(wait=0):
                pass
        calls.append("cleanup")
        return CleanupReport()

    monkeypatch.setattr(cleanup, "cleanup", fake_cleanup)
    return calls


@pytest.fixture
def recorded(hook_dir: Path, tmp_path: Path) -> tuple[Scope, Path]:
    log = tmp_path / "log"
    script = hook_dir / "10-rec"
    script.write_text(RECORD.replace("LOG", str(log)))
    script.chmod(0o755)
    return Hooks(hook_dir).scope(VMSNAP_COMMAND="restore"), log


def test_a_job_runs_start_end_and_job_end_or_abort(recorded: tuple[Scope, Path]) -> None:
    scope, log = recorded
    with run_job(scope, end=hooks.RESTORE_END, abort=hooks.RESTORE_ABORT) as job:
        job.wrote(["/dev/vg0/a", "/dev/vg0/b"])
    with (
        pytest.raises(NotFoundError),
        run_job(scope, end=hooks.RESTORE_END, abort=hooks.RESTORE_ABORT),
    ):
        raise NotFoundError("no such image")
    assert log.read_text().splitlines() == [
        "job-start   ",
        "restore-end /dev/vg0/a /dev/vg0/b  ",
        "job-end  ok ",
        "job-start   ",
        "restore-abort   no such image",
        "job-end  failed ",
    ]


def test_a_job_start_veto_stops_the_job_before_it_starts(hook_dir: Path) -> None:
    (hook_dir / "10-no").write_text("#!/bin/sh\nexit 4\n")
    (hook_dir / "10-no").chmod(0o755)
    ran = []
    with (
        pytest.raises(HookError, match="10-no at job-start exited with status 4"),
        run_job(Hooks(hook_dir).scope(), end=hooks.CLONE_END, abort=hooks.CLONE_ABORT),
    ):
        ran.append(True)
    assert ran == []
    assert not (journal.state_dir() / journal.JOURNAL).exists()


def test_a_signal_is_an_abort_and_an_interrupted_run(recorded: tuple[Scope, Path]) -> None:
    scope, log = recorded
    with (
        pytest.raises(Interrupted),
        run_job(scope, end=hooks.CLONE_END, abort=hooks.CLONE_ABORT),
    ):
        raise Interrupted(signal.SIGTERM)
    assert log.read_text().splitlines() == [
        "job-start   ",
        "clone-abort   interrupted by SIGTERM",
        "job-end  interrupted ",
    ]


def test_a_job_that_records_its_failures_ends_failed(recorded: tuple[Scope, Path]) -> None:
    scope, log = recorded
    with run_job(scope) as job:
        job.failed = True  # a backup: one guest failed, the others went on
    assert log.read_text().splitlines() == ["job-start   ", "job-end  failed "]


def test_without_job_phases_only_the_jobs_own_end_runs(recorded: tuple[Scope, Path]) -> None:
    scope, log = recorded
    with run_job(scope, end=hooks.CHECKPOINT_END, job_phases=False) as job:
        job.end_env["VMSNAP_VOLUMES"] = "/dev/vg0/a-ckpt"
    assert log.read_text().splitlines() == ["checkpoint-end /dev/vg0/a-ckpt  "]


def test_the_journal_carries_what_cleanup_left_and_goes_at_the_end(
    monkeypatch: pytest.MonkeyPatch, private_state: list[str]
) -> None:
    monkeypatch.setattr(cleanup, "cleanup", lambda: CleanupReport(unresolved=[STRANDED]))
    path = journal.state_dir() / journal.JOURNAL
    with run_job(hooks.NO_SCOPE) as job:
        assert job.journal.path == path
        assert journal.load_left() is not None
        job.journal.note_volume("vg0/web02-vda")
        job.journal.forget_volume("vg0/web02-vda")  # complete: kept, off the record
        assert [g.name for g in job.journal.data.guests] == ["web01"]
    left = journal.load_left()  # the guest is still on record for the next cleanup
    assert left is not None
    assert (left.guests, left.volumes) == ([STRANDED], [])


def test_a_clean_job_leaves_no_journal_and_the_lock_free(private_state: list[str]) -> None:
    with run_job(hooks.NO_SCOPE):
        pass
    assert private_state == ["cleanup"]
    assert journal.load_left() is None
    with run_lock(wait=0):
        pass
