"""Background jobs started from the TUI: each is a ``curator`` command in its own process that
takes over a pending Job record (through ``CURATOR_JOB_ID``) and reports progress there.

The launcher also settles what a command cannot report itself. It records a command that exits
before taking its record over (a usage error, for example) or dies without closing it. A cancel
request that the command does not honour in time escalates from SIGINT to SIGTERM to SIGKILL.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from curator.db import Catalog
from curator.jobs import JOB_ID_VARIABLE, create_pending_job, request_cancel
from curator.models import Job, utcnow
from curator.settings import Settings

log = logging.getLogger(__name__)

# Seconds a job gets to notice a cancel request at its next progress update before it is
# interrupted (SIGINT, which the job records as cancelled), then terminated, then killed.
CANCEL_GRACE_SECONDS = 10.0
INTERRUPT_GRACE_SECONDS = 5.0
TERMINATE_GRACE_SECONDS = 5.0
OUTPUT_TAIL_BYTES = 64 * 1024
ACTIVE_STATUSES = ("pending", "running")


class LaunchError(ValueError):
    """A job could not be started; the message names the command and the reason."""


@dataclass(frozen=True)
class JobTemplate:
    """A command line offered in the jobs screen as a starting point; the curator edits the words."""

    title: str
    command: str


JOB_TEMPLATES = (
    JobTemplate("import a folder", "import folder PATH --workers 1"),
    JobTemplate("detect markings", "detect markings normal"),
    JobTemplate("clean marked images", "clean marked"),
    JobTemplate("train a Glow model", "glow train normal CC original --name NAME --preset small"),
    JobTemplate("generate samples", "generate sample --model NAME --count 16 --temperature 0.7"),
    JobTemplate("evaluate a split", "evaluate SPLIT --seeds 3"),
    JobTemplate("experiment grid", "experiment grid --name NAME --query 'normal cancer original' --real 50,100 --synthetic 0,100 --method sample --seeds 3"),
    JobTemplate("run the study", "study PATH --preset small"),
)


@dataclass(frozen=True)
class JobRow:
    """One job record as the jobs table shows it."""

    id: int
    kind: str
    status: str
    progress: float
    total: float | None
    message: str | None
    error: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    cancel_requested: bool

    @property
    def fraction(self) -> float | None:
        """Progress between 0 and 1, or None when the job gave no total."""
        if not self.total:
            return None
        return max(0.0, min(1.0, self.progress / self.total))

    @property
    def progress_text(self) -> str:
        """Progress as ``done/total``, or ``done`` without a total."""
        return f"{self.progress:g}/{self.total:g}" if self.total else f"{self.progress:g}"


@dataclass(frozen=True)
class JobDetail:
    """A job record with its log lines, the command that ran it and its captured output."""

    row: JobRow
    log: str
    command: list[str]
    output: str


@dataclass
class _Process:
    job_id: int
    process: subprocess.Popen[bytes]
    output_path: Path
    cancel_at: float | None = None
    signals_sent: list[str] = field(default_factory=list)


def _row_of(job: Job) -> JobRow:
    return JobRow(id=job.id, kind=job.kind, status=job.status, progress=job.progress or 0.0, total=job.total,
                  message=job.message, error=job.error, started_at=job.started_at, finished_at=job.finished_at,
                  cancel_requested=bool(job.cancel_requested))


class JobLauncher:
    """Launcher of ``curator`` commands as background processes, following their Job records."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self._processes: dict[int, _Process] = {}
        self._lock = threading.Lock()

    def known_commands(self) -> list[str]:
        """Return the names of the ``curator`` sub-commands this installation has."""
        import typer

        from curator.cli import app

        group = typer.main.get_command(app)
        return sorted(group.commands)  # type: ignore[attr-defined]

    def start(self, command_line: str) -> int:
        """Create a pending job, start ``curator WORDS...`` for it in the background and return its id.

        The process runs in its own session, so it keeps going after the TUI exits, and writes its
        output to ``logs/job-ID.log`` in the data home.
        """
        words = shlex.split(command_line)
        if words and words[0] == "curator":
            words = words[1:]
        if not words:
            raise LaunchError("no command given; type a curator command such as 'import folder PATH'")
        known = self.known_commands()
        if words[0] not in known:
            raise LaunchError(f"unknown curator command {words[0]!r}; known commands: {', '.join(known)}")
        if words[0] == "tui":
            raise LaunchError("the TUI cannot be started as a background job")

        job_id = create_pending_job(self.catalog, words[0], {"command": words})
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        output_path = self.settings.logs_dir / f"job-{job_id}.log"
        # -P keeps the current folder off sys.path, so a curator checkout there cannot shadow the installed one.
        isolation = ["-P"] if sys.version_info >= (3, 11) else []
        arguments = [sys.executable, *isolation, "-c", "from curator.cli import main; main()",
                     "--db", self.settings.database_url, "--home", str(self.settings.home), *words]
        environment = dict(os.environ, **{JOB_ID_VARIABLE: str(job_id), "PYTHONUNBUFFERED": "1"})
        with open(output_path, "wb") as output:
            process = subprocess.Popen(arguments, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                       env=environment, start_new_session=True)
        with self._lock:
            self._processes[job_id] = _Process(job_id, process, output_path)
        log.info("started job %d (pid %d): curator %s", job_id, process.pid, shlex.join(words))
        return job_id

    def cancel(self, job_id: int) -> str:
        """Ask a job to stop and return a one-line account of what was done.

        A process started by this launcher is interrupted if it does not stop in time.
        """
        if not request_cancel(self.catalog, job_id):
            return f"job {job_id} is not pending or running"
        with self._lock:
            running = self._processes.get(job_id)
            if running is not None and running.cancel_at is None:
                running.cancel_at = time.monotonic()
        if running is None:
            return f"asked job {job_id} to stop at its next progress update"
        return f"asked job {job_id} to stop; it is interrupted if still running in {CANCEL_GRACE_SECONDS:g} s"

    def poll(self) -> None:
        """Settle the records of processes that ended and push overdue cancellations along."""
        with self._lock:
            processes = list(self._processes.values())
        for running in processes:
            exit_code = running.process.poll()
            if exit_code is None:
                self._escalate(running)
                continue
            self._settle(running, exit_code)
            with self._lock:
                self._processes.pop(running.job_id, None)

    def _escalate(self, running: _Process) -> None:
        if running.cancel_at is None:
            return
        waited = time.monotonic() - running.cancel_at
        steps = (
            (CANCEL_GRACE_SECONDS, "SIGINT", signal.SIGINT),
            (CANCEL_GRACE_SECONDS + INTERRUPT_GRACE_SECONDS, "SIGTERM", signal.SIGTERM),
            (CANCEL_GRACE_SECONDS + INTERRUPT_GRACE_SECONDS + TERMINATE_GRACE_SECONDS, "SIGKILL", signal.SIGKILL),
        )
        for after, name, number in steps:
            if waited >= after and name not in running.signals_sent:
                running.signals_sent.append(name)
                log.info("job %d still running %.0f s after the cancel request; sending %s", running.job_id, waited, name)
                try:
                    # The whole process group, so worker processes of the command stop too.
                    os.killpg(running.process.pid, number)
                except ProcessLookupError:
                    pass
                return

    # NOTE: only processes started by this launcher are settled. If the TUI quits first and the
    # command then dies before closing its record, the record stays pending or running.
    def _settle(self, running: _Process, exit_code: int) -> None:
        last_line = _last_line(running.output_path)
        with self.catalog.transaction() as session:
            job = session.get(Job, running.job_id)
            if job is None or job.status not in ACTIVE_STATUSES:
                return
            if running.signals_sent or job.cancel_requested:
                job.status, job.error = "cancelled", "cancelled"
            elif exit_code == 0:
                # The command ended well but kept no record of its own: it has no JobRecorder.
                job.status, job.error = "done", None
            else:
                job.status = "failed"
                job.error = last_line or f"process exited with code {exit_code}"
            job.finished_at = utcnow()
            job.result = {**(job.result or {}), "exit_code": exit_code}
        log.info("job %d ended with exit code %d; recorded as %s", running.job_id, exit_code, job.status)

    def list_jobs(self, limit: int = 100) -> list[JobRow]:
        """Return the newest jobs first."""
        with self.catalog.session() as session:
            return [_row_of(job) for job in session.scalars(select(Job).order_by(Job.id.desc()).limit(limit))]

    def detail(self, job_id: int) -> JobDetail | None:
        """Return one job with its log and the tail of its captured output, or None if it is gone."""
        with self.catalog.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                return None
            row, job_log, command = _row_of(job), job.log or "", list((job.params or {}).get("command", []))
        output_path = self.settings.logs_dir / f"job-{job_id}.log"
        return JobDetail(row=row, log=job_log, command=command, output=_tail(output_path))

    def running_here(self) -> list[int]:
        """Return the ids of jobs whose process this launcher started and has not seen end."""
        with self._lock:
            return sorted(self._processes)


def _tail(path: Path, size: int = OUTPUT_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            length = handle.tell()
            handle.seek(max(0, length - size))
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _last_line(path: Path) -> str:
    lines = [line.strip() for line in _tail(path, 4096).splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""
