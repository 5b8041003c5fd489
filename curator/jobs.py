"""Job records: long work (imports, detection, training, evaluation) reports its progress,
log and outcome in the catalog, so the TUI and other processes can follow and cancel it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sqlalchemy import select

from curator.db import Catalog
from curator.models import Job, utcnow

PROGRESS_INTERVAL_SECONDS = 0.5
# Set by the process that starts a command as a background job (the TUI): the id of its pending Job row.
JOB_ID_VARIABLE = "CURATOR_JOB_ID"


class JobCancelled(Exception):
    """The job's record was marked for cancellation by another process."""


class JobRecorder:
    """Writes one job's status, progress and log lines to the catalog, throttled.

    Use as a context manager: the job is ``running`` inside the block, ``done`` when it ends,
    ``failed`` with the error's first line when it raises, and ``cancelled`` on Ctrl-C or when
    another process asked for cancellation.
    """

    def __init__(self, catalog: Catalog, kind: str, params: dict[str, Any] | None = None, key: str | None = None, job_id: int | None = None) -> None:
        self.catalog = catalog
        self.kind = kind
        self.params = params or {}
        self.key = key
        self.job_id = job_id
        self._last_write = 0.0
        self._last_progress: tuple[float, float | None, str | None] | None = None
        self._pending_log: list[str] = []
        self.result: dict[str, Any] = {}

    def __enter__(self) -> JobRecorder:
        if self.job_id is None and os.environ.get(JOB_ID_VARIABLE):
            # A job launched by the TUI: its record already exists. Only the first recorder of the
            # process takes it over, so nested stages get records of their own.
            self.job_id = int(os.environ.pop(JOB_ID_VARIABLE))
        with self.catalog.transaction() as session:
            job = session.get(Job, self.job_id) if self.job_id is not None else None
            if job is None:
                job = Job(kind=self.kind, params=self.params, key=self.key)
                session.add(job)
            job.status = "running"
            job.pid = os.getpid()
            job.started_at = utcnow()
            job.error = None
            session.flush()
            self.job_id = job.id
        return self

    def __exit__(self, exc_type, exc, _traceback) -> bool:
        if exc_type is None:
            status, error = "done", None
        elif issubclass(exc_type, (KeyboardInterrupt, JobCancelled)):
            status, error = "cancelled", "cancelled"
        else:
            status, error = "failed", (str(exc).splitlines() or [exc_type.__name__])[0]
        # Progress writes are throttled, so the last value given may not be stored yet.
        done, total, message = self._last_progress or (None, None, None)
        self._write(status=status, error=error, progress=done, total=total, message=message, final=True)
        return False

    def log(self, line: str) -> None:
        """Append a line to the job's log (written with the next progress update)."""
        self._pending_log.append(line)

    def progress(self, done: float, total: float | None = None, message: str | None = None, force: bool = False) -> None:
        """Record progress; writes at most every half second unless ``force`` is set."""
        self._last_progress = (done, total, message)
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_INTERVAL_SECONDS:
            return
        self._last_write = now
        cancel = self._write(progress=done, total=total, message=message)
        if cancel:
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def _write(self, *, status: str | None = None, error: str | None = None, progress: float | None = None,
               total: float | None = None, message: str | None = None, final: bool = False) -> bool:
        with self.catalog.transaction() as session:
            job = session.get(Job, self.job_id)
            if job is None:
                return False
            if progress is not None:
                job.progress = float(progress)
            if total is not None:
                job.total = float(total)
            if message is not None:
                job.message = message
            if self._pending_log:
                job.log = (job.log or "") + "".join(line.rstrip("\n") + "\n" for line in self._pending_log)
                self._pending_log.clear()
            if final:
                job.status = status or job.status
                job.error = error
                job.finished_at = utcnow()
                job.result = dict(self.result)
            return bool(job.cancel_requested)


def finished_job(catalog: Catalog, key: str) -> Job | None:
    """Return the newest job with this key that finished successfully, if any."""
    with catalog.session() as session:
        return session.scalars(select(Job).where(Job.key == key, Job.status == "done").order_by(Job.id.desc()).limit(1)).first()


def request_cancel(catalog: Catalog, job_id: int) -> bool:
    """Mark a pending or running job for cancellation; return False when it had already ended."""
    with catalog.transaction() as session:
        job = session.get(Job, job_id)
        if job is None or job.status not in ("pending", "running"):
            return False
        job.cancel_requested = True
        if job.status == "pending":
            job.status = "cancelled"
            job.finished_at = utcnow()
        return True


def create_pending_job(catalog: Catalog, kind: str, params: dict[str, Any]) -> int:
    """Add a pending job record for a command about to be started in the background."""
    with catalog.transaction() as session:
        job = Job(kind=kind, params=params, status="pending")
        session.add(job)
        session.flush()
        return job.id
