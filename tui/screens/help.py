"""The help screen: every key of the curator TUI, screen by screen."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("everywhere", (
        ("1 / 2 / 3", "browse, splits, jobs (when no text field has the focus)"),
        ("?", "this help"),
        ("q", "quit (background jobs keep running)"),
    )),
    ("browse", (
        ("/", "type query words; the count follows as you type"),
        ("enter", "in the query: load and go to the table; in the table: look at the image"),
        ("escape", "leave the query for the table"),
        ("m / u / c", "verdict marked / unmarked / clear for the image under the cursor"),
        ("z", "undo the newest verdict of this session"),
        ("r", "review the unreviewed images whose detector score is nearest 0.5"),
        ("d", "review the images where the curator and the detector disagree"),
    )),
    ("look", (
        ("m / u / c", "verdict marked / unmarked / clear; in a review, go on to the next image"),
        ("z", "undo; in a review, go back to that image"),
        ("n", "in a review: skip this image"),
        ("enter", "on a parent or child: open it"),
        ("escape", "back"),
    )),
    ("splits", (
        ("ctrl+r", "preview the split: counts per side and what the leakage guard excluded"),
        ("ctrl+s", "create the split"),
        ("escape", "leave the form"),
    )),
    ("jobs", (
        ("s", "type a curator command to start in the background (or pick a template)"),
        ("enter", "start the typed command"),
        ("x", "cancel the selected job (interrupted if it does not stop within 10 s)"),
        ("escape", "leave the command line for the jobs table"),
    )),
)


def keys_table() -> Table:
    """Return the keys of every screen as one table."""
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for screen, keys in KEYS:
        table.add_row(f"[bold]{screen}[/]", "")
        for key, meaning in keys:
            table.add_row(f"  {key}", meaning)
    return table


class HelpScreen(ModalScreen[None]):
    """A modal list of the keys. Escape, q or ? closes it."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        """Show the keys in a scrollable box."""
        with VerticalScroll(id="help-box"):
            yield Static(keys_table())
