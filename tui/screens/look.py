"""The look screen: one image with the detector's boxes drawn on it, beside its metadata,
detections, verdicts and lineage. Its flag keys and undo also drive the review walk, which moves
to the next image after each decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Header, Static

from curator.db import CatalogError
from tui.screens.base import CuratorScreen
from tui.screens.browse import FLAG_VALUES
from tui.services import VERDICT_WORDS, ReviewQueue

# Fixed widths keep the layout from shifting when rows arrive after the first paint.
LINEAGE_COLUMNS = (("relation", 8), ("id", 8), ("label", 7), ("origin", 10), ("method", 13), ("role", 14))
SUMMARY_FIELDS = ("dataset", "patient_key", "case_id", "label", "view", "side", "origin", "method", "params",
                  "width", "height", "bit_depth", "latent_path")


def display_path(path: str, home: Path) -> str:
    """Return a file path relative to the data home when it lies inside it, else unchanged."""
    try:
        return str(Path(path).relative_to(home))
    except ValueError:
        return path


def describe_image(details: dict[str, Any], home: Path) -> Table:
    """Return the metadata of ``image_details`` as a two-column table (value sources in brackets)."""
    image = details["image"]
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("image", str(image["id"]))
    table.add_row("file", display_path(image["file_path"], home))
    for key in SUMMARY_FIELDS:
        value = image.get(key)
        if value in (None, {}, []):
            continue
        source = image.get(f"{key}_source")
        table.add_row(key, f"{value}" + (f"  (from {source})" if source else ""))
    score = image.get("marking_score")
    marking = details["marking"] + (f", detector score {score:.2f}" if score is not None else "")
    table.add_row("marking", marking)
    table.add_row("verdict", VERDICT_WORDS[image.get("marking_verdict")])
    if details["generator"]:
        table.add_row("generator", f"{details['generator']['name']} (id {details['generator']['id']})")
    return table


def describe_history(details: dict[str, Any]) -> Group:
    """Return the detections and the curator's verdicts, newest last."""
    lines: list[Text] = [Text("detections", style="bold")]
    for detection in details["detections"]:
        answer = "flagged" if detection["flagged"] else "not flagged"
        lines.append(Text(f"  {detection['detector']} v{detection['version']}: score {detection['score']:.3f}, "
                          f"{answer}, {len(detection['boxes'])} box(es) {detection['boxes']}"))
    if not details["detections"]:
        lines.append(Text("  none"))
    lines.append(Text("verdicts", style="bold"))
    for verdict in details["verdicts"]:
        word = {True: "marked", False: "unmarked", None: "cleared"}[verdict["marked"]]
        note = f" ({verdict['note']})" if verdict["note"] else ""
        lines.append(Text(f"  {word} by {verdict['curator'] or 'curator'}{note} at {verdict['at']}"))
    if not details["verdicts"]:
        lines.append(Text("  none"))
    return Group(*lines)


class LookScreen(CuratorScreen):
    """Look at one image closely, flag it, and walk to its parents and children."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("m", "flag('marked')", "Marked"),
        Binding("u", "flag('unmarked')", "Unmarked"),
        Binding("c", "flag('clear')", "Clear"),
        Binding("z", "undo", "Undo"),
        Binding("n", "skip", "Skip"),
    ]

    image_id: reactive[int] = reactive(0, init=False)

    def __init__(self, image_id: int, review: ReviewQueue | None = None) -> None:
        super().__init__()
        self.review = review
        self._first_image = image_id

    def compose(self) -> ComposeResult:
        """Lay out the preview beside the metadata, history and lineage."""
        preview_class = self.app.preview_class  # type: ignore[attr-defined]
        yield Header()
        with Horizontal(id="look-body"):
            yield preview_class(id="preview")
            with VerticalScroll(id="look-info"):
                yield Static(id="review-status")
                yield Static(id="summary")
                yield Static(id="history")
                yield Static("lineage (enter opens)", id="lineage-title")
                yield DataTable(id="lineage", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        """Set up the lineage columns and load the first image."""
        table = self.query_one("#lineage", DataTable)
        for column, width in LINEAGE_COLUMNS:
            table.add_column(column, width=width)
        self.query_one("#review-status").display = self.review is not None
        self.image_id = self._first_image

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer the skip key only during a review walk."""
        if action == "skip":
            return self.review is not None
        return True

    def watch_image_id(self, image_id: int) -> None:
        """Load the newly chosen image."""
        self.load_image(image_id)

    @work(exclusive=True, group="look")
    async def load_image(self, image_id: int) -> None:
        """Read the image's details and preview pixels, then show them."""
        self.sub_title = f"image {image_id}"
        try:
            details = await self.read(self.services.details, image_id)
            source = await self.read(self.services.preview, image_id)
        except CatalogError as error:
            self.query_one("#summary", Static).update(Text(str(error), style="bold red"))
            return
        self.query_one("#summary", Static).update(describe_image(details, self.services.settings.home))
        self.query_one("#history", Static).update(describe_history(details))
        self.query_one("#preview").source = source  # type: ignore[attr-defined]
        if source.note:
            self.notify(source.note, timeout=3)
        self._show_lineage(details)
        self._show_review()

    def _show_lineage(self, details: dict[str, Any]) -> None:
        table = self.query_one("#lineage", DataTable)
        table.clear()
        for relation, rows in (("parent", details["parents"]), ("child", details["children"])):
            for row in rows:
                table.add_row(relation, str(row["id"]), row["label"] or "-", row["origin"], row["method"] or "-", row["role"],
                              key=f"{relation}-{row['id']}-{row['role']}")
        self.query_one("#lineage-title", Static).update("lineage (enter opens)" if table.row_count else "lineage: none")
        table.display = table.row_count > 0

    def _show_review(self) -> None:
        if self.review is not None:
            self.query_one("#review-status", Static).update(self.review.describe())

    @on(DataTable.RowSelected, "#lineage")
    def open_relative(self, event: DataTable.RowSelected) -> None:
        """Open the selected parent or child."""
        table = self.query_one("#lineage", DataTable)
        image_id = int(table.get_row(event.row_key)[1])
        self.app.push_screen(LookScreen(image_id))

    def action_flag(self, word: str) -> None:
        """Write the verdict for this image; in a review walk, go on to the next image at once."""
        if self.review is not None and self.review.current is None:
            self.notify("review finished; escape goes back", timeout=3)
            return
        self.write_verdict(self.image_id, word)
        if self.review is not None:
            self.review.decided += 1
            self._advance()

    @work(group="verdicts")
    async def write_verdict(self, image_id: int, word: str) -> None:
        """Write one verdict on the writer thread; keys keep working while it waits for a lock."""
        try:
            await self.write(self.services.flag, image_id, FLAG_VALUES[word])
        except (CatalogError, SQLAlchemyError) as error:
            self.notify(f"verdict for image {image_id} not written: {error}", severity="error", timeout=8)
            return
        self.notify(f"image {image_id}: {word}", timeout=2)
        if image_id == self.image_id:
            self.load_image(image_id)

    def action_skip(self) -> None:
        """Leave this image undecided and go on to the next one of the walk."""
        if self.review is not None:
            self._advance()

    def _advance(self) -> None:
        assert self.review is not None
        next_id = self.review.advance()
        if next_id is None:
            self._show_review()
            self.notify("review finished; escape goes back", timeout=3)
            return
        self.image_id = next_id

    def action_undo(self) -> None:
        """Restore the verdict the newest flag replaced; in a review walk, return to that image."""
        self.undo_verdict()

    @work(group="verdicts")
    async def undo_verdict(self) -> None:
        """Undo on the writer thread, after every verdict written before it."""
        change = await self.undo_newest_verdict()
        if change is None:
            return
        target = self.image_id
        if self.review is not None and self.review.go_back_to(change.image_id):
            self.review.decided = max(0, self.review.decided - 1)
            target = change.image_id
        if target != self.image_id:
            self.image_id = target
        else:
            self.load_image(target)
