"""The splits screen: build a leak-proof split from queries, preview its counts per side and what
the leakage guard excluded, then create it (through ``curator.splits``, as ``curator split create``)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Checkbox, DataTable, Footer, Header, Input, Label, Static

from curator.db import CatalogError
from curator.query import QueryError
from tui.screens.base import CuratorScreen

SIDES = ("train", "val", "test")
# Fixed widths keep the layout from shifting when the list is read after the first paint.
SPLIT_COLUMNS = (("id", 5), ("name", 24), ("query", 30), ("synthetic", 22), ("seed", 6), ("train", 6), ("val", 6), ("test", 6), ("locked", 6))


class FormError(ValueError):
    """A field of the split form contains an invalid value; the message names the field."""


def plan_table(counts: dict[str, dict[str, int]], patients: dict[str, int]) -> Table:
    """Return images per side and label, with totals and patients, as a table."""
    labels = sorted({label for per_label in counts.values() for label in per_label})
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("side", style="bold")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("images", justify="right")
    table.add_column("patients", justify="right")
    for side in SIDES:
        per_label = counts.get(side, {})
        if not per_label and not patients.get(side):
            continue
        table.add_row(side, *(str(per_label.get(label, 0)) for label in labels), str(sum(per_label.values())), str(patients.get(side, 0)))
    return table


def exclusion_lines(counts: dict[str, int], examples: dict[str, list[int]]) -> list[Text]:
    """Return one line per exclusion reason with its count and a few image ids."""
    if not counts:
        return [Text("leakage guard excluded nothing")]
    lines = [Text(f"leakage guard excluded {sum(counts.values())}:", style="bold")]
    for reason, count in counts.items():
        example_ids = ", ".join(str(image_id) for image_id in examples.get(reason, []))
        lines.append(Text(f"  {count} {reason}" + (f" (e.g. {example_ids})" if example_ids else "")))
    return lines


def describe_plan(plan: Any) -> Group:
    """Render a ``SplitPlan``: the queries, the counts per side, the synthetic additions, exclusions and notes."""
    header = Text(f"preview of '{plan.spec.name}': query '{plan.query}', seed {plan.spec.seed}", style="bold")
    parts: list[Any] = [header, plan_table(plan.counts, plan.patients)]
    if plan.synthetic_query is not None:
        parts.append(Text(f"synthetic '{plan.synthetic_query}': {plan.eligible_synthetic} eligible, {plan.added_synthetic} added to train"))
        parts.extend(exclusion_lines(plan.exclusion_counts(), plan.exclusion_examples()))
    parts.extend(Text(f"note: {note}", style="italic") for note in plan.notes)
    parts.append(Text("nothing written yet; ctrl+s creates the split", style="dim"))
    return Group(*parts)


def describe_summary(summary: dict[str, Any]) -> Group:
    """Render ``split_summary`` of a created split: images and patients per side, and exclusions."""
    counts = {side: dict(values.get("label", {})) for side, values in summary["sides"].items()}
    patients = {side: values.get("patients", 0) for side, values in summary["sides"].items()}
    excluded = {reason: entry["count"] for reason, entry in summary["excluded"].items()}
    examples = {reason: entry["examples"] for reason, entry in summary["excluded"].items()}
    parts: list[Any] = [Text(f"created split '{summary['name']}' (id {summary['id']}): query '{summary['query']}', seed {summary['seed']}", style="bold green"),
                        plan_table(counts, patients)]
    if summary["synthetic_query"]:
        parts.extend(exclusion_lines(excluded, examples))
    return Group(*parts)


class SplitsScreen(CuratorScreen):
    """Preview and create splits; list the existing ones."""

    AUTO_FOCUS = "#splits"

    BINDINGS = [
        Binding("ctrl+r", "preview", "Preview", priority=True),
        Binding("ctrl+s", "create", "Create", priority=True),
        Binding("escape", "leave_form", "Leave form", show=False),
    ]

    def compose(self) -> ComposeResult:
        """Lay out the split form, the plan and the list of splits."""
        yield Header()
        with VerticalScroll(id="split-form"):
            with Horizontal(classes="form-row"):
                yield Label("name", classes="form-label")
                yield Input(placeholder="split name, e.g. normal-vs-cancer-1", id="split-name")
            with Horizontal(classes="form-row"):
                yield Label("query", classes="form-label")
                yield Input(placeholder="real images to split, e.g. normal cancer original", id="split-query")
            with Horizontal(classes="form-row"):
                yield Label("test fraction", classes="form-label")
                yield Input("0.2", id="test-fraction", type="number", classes="short")
                yield Label("validation fraction", classes="form-label")
                yield Input("0", id="val-fraction", type="number", classes="short")
                yield Label("seed", classes="form-label")
                yield Input("0", id="seed", type="integer", classes="short")
                yield Checkbox("stratify by view", id="by-view")
            with Horizontal(classes="form-row"):
                yield Label("synthetic query", classes="form-label")
                yield Input(placeholder="optional, e.g. synthetic sampled", id="synthetic-query")
                yield Label("count", classes="form-label")
                yield Input(placeholder="all", id="synthetic-count", type="integer", classes="short")
            with Horizontal(classes="form-row buttons"):
                yield Button("Preview (ctrl+r)", id="preview")
                yield Button("Create (ctrl+s)", id="create", variant="primary")
        yield Static("tab moves into the form; fill in a name and a query, then preview", id="plan")
        yield DataTable(id="splits", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        """Set up the list of splits."""
        self.sub_title = "splits"
        table = self.query_one("#splits", DataTable)
        for column, width in SPLIT_COLUMNS:
            table.add_column(column, key=column, width=width)
        self.load_splits()

    def on_screen_resume(self) -> None:
        """Show splits made elsewhere meanwhile."""
        self.load_splits()

    @work(exclusive=True, group="splits-list")
    async def load_splits(self) -> None:
        """Read the existing splits and list them."""
        splits = await self.read(self.services.list_splits)
        table = self.query_one("#splits", DataTable)
        table.clear()
        for split in splits:
            sides = split["sides"]
            table.add_row(str(split["id"]), split["name"], split["query"], split["synthetic_query"] or "-", str(split["seed"]),
                          str(sides["train"]), str(sides["val"]), str(sides["test"]), "yes" if split["locked"] else "no", key=str(split["id"]))

    def read_spec(self) -> Any:
        """Build a ``SplitSpec`` from the form; raise FormError naming the first invalid field."""
        from curator.splits import SplitSpec

        def text(field_id: str) -> str:
            return self.query_one(f"#{field_id}", Input).value.strip()

        def number(field_id: str, title: str, kind: type) -> Any:
            value = text(field_id)
            try:
                return kind(value)
            except ValueError:
                expected = "a whole number" if kind is int else "a number"
                raise FormError(f"invalid {title} {value!r}: expected {expected}") from None

        name, query = text("split-name"), text("split-query")
        if not name:
            raise FormError("missing split name")
        if not query:
            raise FormError("missing query: give the words that select the real images to split")
        synthetic_query = text("synthetic-query") or None
        synthetic_count = number("synthetic-count", "synthetic count", int) if text("synthetic-count") else None
        return SplitSpec(
            name=name,
            query=query,
            test_fraction=number("test-fraction", "test fraction", float),
            val_fraction=number("val-fraction", "validation fraction", float) if text("val-fraction") else 0.0,
            seed=number("seed", "seed", int) if text("seed") else 0,
            by_view=self.query_one("#by-view", Checkbox).value,
            synthetic_query=synthetic_query,
            synthetic_count=synthetic_count,
        )

    def _show_error(self, message: str) -> None:
        self.query_one("#plan", Static).update(Text(message, style="bold red"))

    @on(Button.Pressed, "#preview")
    def preview_pressed(self) -> None:
        """Preview from the button."""
        self.action_preview()

    @on(Button.Pressed, "#create")
    def create_pressed(self) -> None:
        """Create from the button."""
        self.action_create()

    def action_preview(self) -> None:
        """Work out the split from the form and show its plan."""
        try:
            spec = self.read_spec()
        except FormError as error:
            self._show_error(str(error))
            return
        self.run_preview(spec)

    def action_create(self) -> None:
        """Create the split from the form."""
        try:
            spec = self.read_spec()
        except FormError as error:
            self._show_error(str(error))
            return
        self.run_create(spec)

    @work(exclusive=True, group="split-plan")
    async def run_preview(self, spec: Any) -> None:
        """Plan the split off the UI thread."""
        self.query_one("#plan", Static).update(Text("working out the split...", style="dim"))
        try:
            plan = await self.read(self.services.preview_split, spec)
        except (CatalogError, QueryError) as error:
            self._show_error(str(error))
            return
        self.query_one("#plan", Static).update(describe_plan(plan))

    @work(exclusive=True, group="split-plan")
    async def run_create(self, spec: Any) -> None:
        """Create the split off the UI thread and list it."""
        self.query_one("#plan", Static).update(Text("creating the split...", style="dim"))
        try:
            summary = await self.write(self.services.create_split, spec)
        except (CatalogError, QueryError) as error:
            self._show_error(str(error))
            return
        self.query_one("#plan", Static).update(describe_summary(summary))
        self.notify(f"created split '{summary['name']}'", timeout=3)
        self.load_splits()

    def action_leave_form(self) -> None:
        """Move the focus from the form to the list of splits, so screen keys work again."""
        self.query_one("#splits", DataTable).focus()
