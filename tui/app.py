"""The curator terminal UI: a Textual app with three modes (browse, splits, jobs), the look screen
for single images and a help screen. ``curator tui`` starts it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from textual.app import App
from textual.binding import Binding
from textual.widget import Widget

from tui.launcher import JobLauncher
from tui.preview import GraphicsPreview, HalfBlockPreview
from tui.screens.browse import BrowseScreen
from tui.screens.help import HelpScreen
from tui.screens.jobs import JobsScreen
from tui.screens.splits import SplitsScreen
from tui.services import CuratorServices

LAUNCHER_POLL_SECONDS = 1.0


class CuratorApp(App[None]):
    """Browse, flag and review images, build splits and run jobs on one curator catalog."""

    TITLE = "curator"
    CSS_PATH = "curator.tcss"
    MODES = {"browse": BrowseScreen, "splits": SplitsScreen, "jobs": JobsScreen}
    DEFAULT_MODE = "browse"
    BINDINGS = [
        Binding("1", "switch_mode('browse')", "Browse"),
        Binding("2", "switch_mode('splits')", "Splits"),
        Binding("3", "switch_mode('jobs')", "Jobs"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, services: CuratorServices, launcher: JobLauncher | None = None, graphics: bool = False) -> None:
        super().__init__()
        self.services = services
        self.launcher = launcher or JobLauncher(services.settings, services.catalog)
        self.preview_class: type[Widget] = GraphicsPreview if graphics else HalfBlockPreview
        # One thread for every catalog write, so flags and undos reach the catalog in key-press order.
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="curator-writer")

    def on_mount(self) -> None:
        """Settle ended background jobs even while the jobs screen is not shown."""
        self.set_interval(LAUNCHER_POLL_SECONDS, self.poll_launcher)

    def poll_launcher(self) -> None:
        """Let the launcher reap finished processes and escalate overdue cancels, off the UI thread."""
        self.run_worker(self.launcher.poll, thread=True, exclusive=True, group="launcher")

    def action_help(self) -> None:
        """Show the keys."""
        self.push_screen(HelpScreen())

    def on_unmount(self) -> None:
        """Finish the pending writes before the app goes."""
        self.writer.shutdown(wait=True)
