"""The jobs screen: start curator commands in the background and follow their Job records
(status, progress, log, output); cancel one."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Button, DataTable, Footer, Header, Input, ProgressBar, Select, Static

from tui.launcher import JOB_TEMPLATES, JobDetail, JobRow, LaunchError
from tui.screens.base import CuratorScreen

POLL_SECONDS = 1.0
JOB_COLUMNS = ("id", "kind", "status", "progress", "message", "started (UTC)", "error")
# Fixed widths keep the layout from shifting as polled rows arrive and change.
JOB_COLUMN_WIDTHS = (4, 8, 9, 10, 26, 19, 26)
STATUS_STYLES = {"pending": "yellow", "running": "bold cyan", "stopping": "bold magenta", "done": "green", "failed": "bold red",
                 "cancelled": "magenta"}


def job_cells(row: JobRow) -> tuple[str | Text, ...]:
    """Return the table cells of one job, in ``JOB_COLUMNS`` order."""
    status = "stopping" if row.cancel_requested and row.status == "running" else row.status
    return (
        str(row.id),
        row.kind,
        Text(status, style=STATUS_STYLES.get(status, "")),
        row.progress_text,
        row.message or "",
        row.started_at.strftime("%Y-%m-%d %H:%M:%S") if row.started_at else "-",
        row.error or "",
    )


def describe_job(detail: JobDetail) -> Text:
    """Return a job's command, status line, log lines and captured output as one text."""
    row = detail.row
    text = Text()
    text.append(f"job {row.id} ", style="bold")
    text.append(row.status, style=STATUS_STYLES.get(row.status, ""))
    text.append(f"  progress {row.progress_text}")
    if row.message:
        text.append(f"  {row.message}")
    if detail.command:
        text.append(f"\ncurator {' '.join(detail.command)}", style="dim")
    if row.error:
        text.append(f"\nerror: {row.error}", style="bold red")
    if detail.log:
        text.append("\n\nlog\n", style="bold")
        text.append(detail.log.rstrip("\n"))
    if detail.output.strip():
        text.append("\n\noutput\n", style="bold")
        text.append(detail.output.rstrip("\n"))
    return text


class JobsScreen(CuratorScreen):
    """Start, follow and cancel background jobs."""

    BINDINGS = [
        Binding("s", "focus_command", "Start a job"),
        Binding("x", "cancel_job", "Cancel job"),
        Binding("escape", "focus_jobs", "Jobs", show=False),
    ]

    AUTO_FOCUS = "#jobs"

    selected_job: reactive[int | None] = reactive(None)

    def compose(self) -> ComposeResult:
        """Lay out the command line, the jobs table and the selected job's progress and log."""
        yield Header()
        with Horizontal(id="job-start"):
            yield Select([(template.title, template.command) for template in JOB_TEMPLATES], prompt="template", id="template")
            yield Input(placeholder="curator command, e.g. import folder /data/new --workers 1", id="command")
            yield Button("Start", id="start", variant="primary")
        yield DataTable(id="jobs", cursor_type="row")
        yield ProgressBar(id="job-progress", show_eta=False)
        with VerticalScroll(id="job-detail"):
            yield Static("no job selected", id="job-text")
        yield Footer()

    def on_mount(self) -> None:
        """Set up the columns and poll the job records."""
        self.sub_title = "jobs"
        table = self.query_one("#jobs", DataTable)
        for column, width in zip(JOB_COLUMNS, JOB_COLUMN_WIDTHS):
            table.add_column(column, key=column, width=width)
        self.poll_jobs()
        self.set_interval(POLL_SECONDS, self.poll_jobs)

    @work(exclusive=True, group="jobs-poll")
    async def poll_jobs(self) -> None:
        """Read the job records and the selected job's log off the UI thread, then show them."""
        rows = await self.read(self.launcher.list_jobs)
        self._show_rows(rows)
        if self.selected_job is None and rows:
            self.selected_job = rows[0].id
        if self.selected_job is not None:
            detail = await self.read(self.launcher.detail, self.selected_job)
            self._show_detail(detail)

    def _show_rows(self, rows: list[JobRow]) -> None:
        table = self.query_one("#jobs", DataTable)
        keys = [str(row.id) for row in rows]
        if keys != [key.value for key in table.rows]:
            table.clear()
            for row in rows:
                table.add_row(*job_cells(row), key=str(row.id))
            if self.selected_job is not None and str(self.selected_job) in keys:
                table.move_cursor(row=keys.index(str(self.selected_job)), animate=False)
            return
        for row in rows:
            for column, value in zip(JOB_COLUMNS, job_cells(row)):
                table.update_cell(str(row.id), column, value)

    def _show_detail(self, detail: JobDetail | None) -> None:
        bar = self.query_one("#job-progress", ProgressBar)
        text = self.query_one("#job-text", Static)
        if detail is None:
            text.update("the selected job no longer exists")
            return
        row = detail.row
        if row.status == "done":
            # A job writes its progress at most every half second, so the last value can lag behind.
            bar.update(total=1, progress=1)
        elif row.total:
            bar.update(total=row.total, progress=min(row.progress, row.total))
        elif row.status in ("pending", "running"):
            # Without a total the bar pulses, which only suits a job that is still going.
            bar.update(total=None)
        else:
            bar.update(total=1, progress=0)
        scroller = self.query_one("#job-detail", VerticalScroll)
        at_end = scroller.scroll_y >= scroller.max_scroll_y
        text.update(describe_job(detail))
        if at_end:
            scroller.scroll_end(animate=False)

    @on(DataTable.RowHighlighted, "#jobs")
    def job_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Follow the job under the cursor."""
        if event.row_key.value is not None:
            self.selected_job = int(event.row_key.value)

    def watch_selected_job(self) -> None:
        """Show the newly selected job without waiting for the next poll."""
        if self.is_mounted:
            self.poll_jobs()

    @on(Select.Changed, "#template")
    def template_chosen(self, event: Select.Changed) -> None:
        """Put the chosen template on the command line for editing."""
        if isinstance(event.value, str):
            command = self.query_one("#command", Input)
            command.value = event.value
            command.focus()

    @on(Input.Submitted, "#command")
    @on(Button.Pressed, "#start")
    def start_pressed(self) -> None:
        """Start the command on the command line."""
        self.start_job(self.query_one("#command", Input).value)

    @work(group="jobs-start")
    async def start_job(self, command_line: str) -> None:
        """Create the job record and its process, then select it."""
        try:
            job_id = await self.read(self.launcher.start, command_line)
        except LaunchError as error:
            self.notify(str(error), severity="error", timeout=6)
            return
        self.notify(f"started job {job_id}", timeout=3)
        self.selected_job = job_id
        self.query_one("#jobs", DataTable).focus()

    def action_cancel_job(self) -> None:
        """Ask the selected job to stop."""
        if self.selected_job is None:
            self.notify("no job selected", timeout=2)
            return
        self.cancel_job(self.selected_job)

    @work(group="jobs-cancel")
    async def cancel_job(self, job_id: int) -> None:
        """Request the cancel off the UI thread and report what was done."""
        message = await self.read(self.launcher.cancel, job_id)
        self.notify(message, timeout=4)
        self.poll_jobs()

    def action_focus_command(self) -> None:
        """Move the focus to the command line."""
        self.query_one("#command", Input).focus()

    def action_focus_jobs(self) -> None:
        """Move the focus to the jobs table."""
        self.query_one("#jobs", DataTable).focus()
