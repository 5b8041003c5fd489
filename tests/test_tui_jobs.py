"""Jobs screen and launcher: a real curator command started in the background reports through its
Job record. The launcher settles what the command cannot: failures before it takes the record
over, and cancels it does not honour in time."""

from __future__ import annotations

import asyncio
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from curator.db import Catalog
from curator.jobs import create_pending_job
from curator.models import Image, Job
from curator.settings import Settings
from tui import launcher as launcher_module
from tui.app import CuratorApp
from tui.launcher import JobLauncher, LaunchError, _Process
from tui.pilot import settle
from tui.screens.jobs import JobsScreen
from tui.services import CuratorServices

SIZE = (120, 40)
JOB_TIMEOUT_SECONDS = 90


def write_films(folder: Path, count: int) -> None:
    """Write ``count`` small distinct grayscale PNGs into ``folder/normal``."""
    target = folder / "normal"
    target.mkdir(parents=True)
    for index in range(count):
        pixels = np.full((64, 48), 20 + index * 40, dtype=np.uint8)
        pixels[10:50, 0:30] = 200 - index * 10
        cv2.imwrite(str(target / f"film{index}.png"), pixels)


def job_row(catalog: Catalog, job_id: int) -> Job:
    """Read one job record."""
    with catalog.session() as session:
        return session.get(Job, job_id)


def wait_until_settled(launcher: JobLauncher, catalog: Catalog, job_id: int) -> Job:
    """Poll the launcher until the job's process has ended and its record is final."""
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        launcher.poll()
        job = job_row(catalog, job_id)
        if job.status not in ("pending", "running") and job_id not in launcher.running_here():
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish within {JOB_TIMEOUT_SECONDS} s")


def test_job_from_screen_shows_progress(sqlite_settings: Settings, sqlite_catalog: Catalog, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    write_films(incoming, 3)

    async def scenario() -> int:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("3")
            await settle(pilot)
            assert isinstance(app.screen, JobsScreen)
            command = app.screen.query_one("#command")
            command.value = f"import folder {shlex.quote(str(incoming))} --workers 1"
            command.focus()
            await pilot.press("enter")
            await settle(pilot)
            job_id = app.screen.selected_job
            assert job_id is not None

            table = app.screen.query_one("#jobs")
            deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
            while str(table.get_cell(str(job_id), "status")) != "done":
                assert time.monotonic() < deadline, f"job {job_id} still {table.get_cell(str(job_id), 'status')}"
                await pilot.pause(0.5)
            await pilot.pause(1.5)
            await settle(pilot)

            job = job_row(sqlite_catalog, job_id)
            assert job.kind == "import"
            assert job.result["imported"] == 3
            assert table.get_cell(str(job_id), "progress") == f"{job.progress:g}/{job.total:g}"
            assert job.total == 3
            assert app.screen.query_one("#job-progress").percentage == 1.0
            detail = str(app.screen.query_one("#job-text").render())
            assert detail.startswith(f"job {job_id} done  progress {job.progress:g}/3")
            assert f"curator import folder {incoming}" in detail
            return job_id

    asyncio.run(scenario())
    with sqlite_catalog.session() as session:
        assert session.scalar(select(func.count(Image.id))) == 3


def test_launcher_rejects_unknown_command(sqlite_settings: Settings, sqlite_catalog: Catalog) -> None:
    launcher = JobLauncher(sqlite_settings, sqlite_catalog)
    with pytest.raises(LaunchError, match="unknown curator command 'frobnicate'; known commands: .*import"):
        launcher.start("frobnicate everything")
    with pytest.raises(LaunchError, match="no command given"):
        launcher.start("curator")
    with sqlite_catalog.session() as session:
        assert session.scalar(select(func.count(Job.id))) == 0


def test_launcher_records_failure_before_takeover(sqlite_settings: Settings, sqlite_catalog: Catalog, tmp_path: Path) -> None:
    launcher = JobLauncher(sqlite_settings, sqlite_catalog)
    missing = tmp_path / "missing"
    job_id = launcher.start(f"import folder {shlex.quote(str(missing))}")
    job = wait_until_settled(launcher, sqlite_catalog, job_id)
    assert job.status == "failed"
    assert job.error == f"error: folder not found: {missing}"
    assert job.result == {"exit_code": 1}
    assert launcher.detail(job_id).output.strip() == f"error: folder not found: {missing}"


def _adopt(launcher: JobLauncher, catalog: Catalog, arguments: list[str], status: str) -> tuple[int, subprocess.Popen[bytes]]:
    """Register a stand-in process for a job record, as ``JobLauncher.start`` would."""
    job_id = create_pending_job(catalog, "stand-in", {"command": arguments})
    with catalog.transaction() as session:
        session.get(Job, job_id).status = status
    process = subprocess.Popen(arguments, start_new_session=True)
    launcher._processes[job_id] = _Process(job_id, process, launcher.settings.logs_dir / f"job-{job_id}.log")
    return job_id, process


def test_cancel_interrupts_job_that_keeps_running(sqlite_settings: Settings, sqlite_catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher_module, "CANCEL_GRACE_SECONDS", 0.0)
    launcher = JobLauncher(sqlite_settings, sqlite_catalog)
    job_id, process = _adopt(launcher, sqlite_catalog, ["sleep", "30"], "running")

    message = launcher.cancel(job_id)
    assert message == f"asked job {job_id} to stop; it is interrupted if still running in 0 s"
    job = wait_until_settled(launcher, sqlite_catalog, job_id)
    assert process.returncode == -signal.SIGINT
    assert job.status == "cancelled"
    assert job.cancel_requested is True


def test_cancel_terminates_job_that_ignores_interrupt(sqlite_settings: Settings, sqlite_catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher_module, "CANCEL_GRACE_SECONDS", 0.0)
    monkeypatch.setattr(launcher_module, "INTERRUPT_GRACE_SECONDS", 0.5)
    launcher = JobLauncher(sqlite_settings, sqlite_catalog)
    stubborn = "import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"
    job_id, process = _adopt(launcher, sqlite_catalog, [sys.executable, "-c", stubborn], "running")
    time.sleep(0.5)

    launcher.cancel(job_id)
    job = wait_until_settled(launcher, sqlite_catalog, job_id)
    assert process.returncode == -signal.SIGTERM
    assert job.status == "cancelled"


def test_cancel_of_finished_job_is_refused(sqlite_settings: Settings, sqlite_catalog: Catalog) -> None:
    launcher = JobLauncher(sqlite_settings, sqlite_catalog)
    job_id = create_pending_job(sqlite_catalog, "stand-in", {})
    with sqlite_catalog.transaction() as session:
        session.get(Job, job_id).status = "done"
    assert launcher.cancel(job_id) == f"job {job_id} is not pending or running"
