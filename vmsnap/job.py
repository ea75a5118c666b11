"""The job envelope: what every job that makes snapshots or LVs does around its body.

Under the run lock (one run at a time on a host, so that nothing the cleanup
finds belongs to a live run): undo what a dead run left, run the job-start
hooks (which may veto the job before it changes anything), start the run
journal (carrying the guests the cleanup could not release and the unfinished
LVs it could not remove); then the body;
then the job's own end or abort hooks, the journal closed, and job-end with
the run's status.  Backup, restore, clone and checkpoint use it; a backup's
per-guest phases stay in the backup.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from vmsnap import cleanup, hooks
from vmsnap.cleanup import CleanupReport
from vmsnap.errors import Interrupted, VmsnapError
from vmsnap.hooks import Scope
from vmsnap.journal import Journal
from vmsnap.lock import run_lock


@dataclass
class Job:
    """One run inside the envelope; the body fills in what the end hooks say."""

    scope: Scope
    journal: Journal
    left: CleanupReport  # what the cleanup found of a dead run
    end_env: dict[str, str] = field(default_factory=dict)  # variables for the end phase
    failed: bool = False  # a job that records its failures in its results says so here

    def wrote(self, paths: Iterable[str]) -> None:
        """The LVs a restore or clone wrote: VMSNAP_VOLUMES at its end phase."""
        self.end_env["VMSNAP_VOLUMES"] = " ".join(paths)


def _status(exc: BaseException | None, job: Job | None) -> str:
    if exc is None:
        return "failed" if job is not None and job.failed else "ok"
    if isinstance(exc, VmsnapError) and not isinstance(exc, Interrupted):
        return "failed"
    return "interrupted"


@contextmanager
def run_job(
    scope: Scope,
    *,
    end: str | None = None,
    abort: str | None = None,
    job_phases: bool = True,
) -> Iterator[Job]:
    """The envelope around one job (see the module's text).  ``end`` runs with
    the variables the body put in ``Job.end_env``, ``abort`` with
    ``VMSNAP_ERROR`` when the body fails; ``job_phases=False`` leaves out
    job-start and job-end (a checkpoint has only its own end and abort)."""
    with run_lock():
        left = cleanup.cleanup()
        if job_phases:
            scope.run(hooks.JOB_START)
        job: Job | None = None
        failure: BaseException | None = None
        try:
            job = Job(scope, Journal.start(carry=left.unresolved, volumes=left.unremoved), left)
            try:
                yield job
            finally:
                job.journal.close()
        except BaseException as exc:
            failure = exc
            if abort is not None and isinstance(exc, VmsnapError):
                scope.run(abort, VMSNAP_ERROR=str(exc))
            raise
        else:
            if end is not None:
                scope.run(end, **job.end_env)
        finally:
            if job_phases:
                scope.run(hooks.JOB_END, VMSNAP_STATUS=_status(failure, job))
