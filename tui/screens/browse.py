"""The browse screen: query words with a live count, a virtual table of the matching images
loaded a page at a time, flag keys and the entry points of the review walks."""

from __future__ import annotations

from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Static

from curator.db import CatalogError
from curator.query import Query
from tui.screens.base import CuratorScreen
from tui.services import PAGE_SIZE, ReviewQueue
from tui.widgets import ImageTable

# Seconds of typing pause before the count and the table follow the query.
DEBOUNCE_SECONDS = 0.3
FLAG_VALUES: dict[str, bool | None] = {"marked": True, "unmarked": False, "clear": None}


class BrowseScreen(CuratorScreen):
    """Find images with the query language and flag them."""

    BINDINGS = [
        Binding("slash", "focus_query", "Query"),
        Binding("escape", "focus_table", "Table", show=False),
        Binding("m", "flag('marked')", "Marked"),
        Binding("u", "flag('unmarked')", "Unmarked"),
        Binding("c", "flag('clear')", "Clear"),
        Binding("z", "undo", "Undo"),
        Binding("r", "review('uncertain')", "Uncertain"),
        Binding("d", "review('disputed')", "Disputed"),
    ]

    AUTO_FOCUS = "#images"

    query_text: reactive[str] = reactive("", init=False)
    total: reactive[int | None] = reactive(None)

    def __init__(self) -> None:
        super().__init__()
        self.current_query = Query()
        self._debounce: Timer | None = None
        self._seen_touched = 0

    def compose(self) -> ComposeResult:
        """Lay out the query line, its status, the table and the footer."""
        yield Header()
        yield Input(placeholder="query words, e.g. cancer CC-left original unreviewed", id="query")
        with Horizontal(id="status-line"):
            yield Static(id="query-status")
            yield Static(id="position")
        yield ImageTable(id="images")
        yield Footer()

    def on_mount(self) -> None:
        """Show every image until the curator types a query, and follow the cursor's position."""
        self.sub_title = "browse"
        self.watch(self.query_one(ImageTable), "cursor_row", self._show_position)
        self.load_query("")

    async def on_screen_resume(self) -> None:
        """Refresh the rows whose verdict changed while another screen was open."""
        await self.refresh_touched_rows()

    @on(Input.Changed, "#query")
    def query_changed(self, event: Input.Changed) -> None:
        """Follow the typed words."""
        self.query_text = event.value

    def watch_query_text(self, text: str) -> None:
        """Restart the debounce timer: the count and the table follow once typing pauses."""
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(DEBOUNCE_SECONDS, lambda: self.load_query(text))

    @on(Input.Submitted, "#query")
    def query_submitted(self, event: Input.Submitted) -> None:
        """Load at once and move to the table."""
        if self._debounce is not None:
            self._debounce.stop()
        self.load_query(event.value)
        self.action_focus_table()

    @work(exclusive=True, group="query")
    async def load_query(self, text: str) -> None:
        """Count the matches and load the first page; a query error leaves the table as it was."""
        status = self.query_one("#query-status", Static)
        result = await self.read(self.services.count, text)
        if result.error is not None or result.query is None:
            status.update(Text(result.error or "invalid query", style="bold red"))
            status.add_class("error")
            return
        rows = await self.read(self.services.page, result.query)
        status.remove_class("error")
        self.current_query = result.query
        self.query_one(ImageTable).reset(result.count or 0, rows)
        self.total = result.count
        self._show_count()

    @on(ImageTable.PageRequested)
    def page_requested(self, event: ImageTable.PageRequested) -> None:
        """Load a page that scrolled into view."""
        self.load_page(event.generation, event.page)

    @work(group="page")
    async def load_page(self, generation: int, page: int) -> None:
        """Read one page off the UI thread; the table drops it if the query changed meanwhile."""
        table = self.query_one(ImageTable)
        after_id = table.last_id_before(page)
        try:
            rows = await self.read(self.services.page, self.current_query, page * PAGE_SIZE, PAGE_SIZE, after_id)
        except SQLAlchemyError as error:
            table.page_failed(generation, page)
            self.notify(f"cannot load rows {page * PAGE_SIZE + 1}-{(page + 1) * PAGE_SIZE}: {error}", severity="error")
            return
        table.set_page(generation, page, rows)

    def _show_count(self) -> None:
        if self.total is None:
            return
        words = str(self.current_query)
        matched = f"{self.total} image{'s' if self.total != 1 else ''}"
        text = f"{matched} match '{words}'" if words else f"{matched} in the catalog"
        self.query_one("#query-status", Static).update(text)
        self._show_position(self.query_one(ImageTable).cursor_row)

    def _show_position(self, cursor_row: int) -> None:
        total = self.query_one(ImageTable).total
        self.query_one("#position", Static).update(f"row {cursor_row + 1} of {total}" if total else "")

    @on(ImageTable.Selected)
    def open_image(self, event: ImageTable.Selected) -> None:
        """Open the selected image on the look screen."""
        from tui.screens.look import LookScreen

        self.app.push_screen(LookScreen(event.image_id))

    def action_focus_query(self) -> None:
        """Move the focus to the query words."""
        self.query_one("#query", Input).focus()

    def action_focus_table(self) -> None:
        """Move the focus to the image table."""
        self.query_one(ImageTable).focus()

    def action_flag(self, word: str) -> None:
        """Write the curator's verdict for the image under the cursor."""
        image_id = self.query_one(ImageTable).image_id_at_cursor()
        if image_id is not None:
            self.write_verdict(image_id, word)

    @work(group="verdicts")
    async def write_verdict(self, image_id: int, word: str) -> None:
        """Write one verdict on the writer thread; keys keep working while it waits for a lock."""
        try:
            change = await self.write(self.services.flag, image_id, FLAG_VALUES[word])
        except (CatalogError, SQLAlchemyError) as error:
            self.notify(f"verdict for image {image_id} not written: {error}", severity="error", timeout=8)
            return
        self.notify(f"image {change.image_id}: {word}", timeout=2)
        await self.refresh_touched_rows()

    def action_undo(self) -> None:
        """Restore the verdict the newest flag of this session replaced."""
        self.undo_verdict()

    @work(group="verdicts")
    async def undo_verdict(self) -> None:
        """Undo on the writer thread, after every verdict written before it."""
        change = await self.undo_newest_verdict()
        if change is None:
            return
        await self.refresh_touched_rows()

    async def refresh_touched_rows(self) -> None:
        """Reload the table rows of the images flagged since the last refresh."""
        touched = self.services.touched[self._seen_touched :]
        self._seen_touched = len(self.services.touched)
        table = self.query_one(ImageTable)
        for image_id in dict.fromkeys(touched):
            row = await self.read(self.services.row, image_id)
            if row is not None:
                table.update_image(row)

    def action_review(self, kind: str) -> None:
        """Walk the uncertain or disputed images among the current matches, one key per decision."""
        self.start_review(kind)

    @work(exclusive=True, group="review")
    async def start_review(self, kind: str) -> None:
        """Read the review queue off the UI thread and open its first image."""
        from tui.screens.look import LookScreen

        image_ids = await self.read(self.services.review_queue, kind, self.current_query)
        if not image_ids:
            self.notify(f"no {kind} images match '{self.current_query}'", timeout=3)
            return
        queue = ReviewQueue(kind=kind, image_ids=image_ids)
        self.app.push_screen(LookScreen(image_ids[0], review=queue))
