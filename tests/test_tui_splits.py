"""Splits screen: the preview and the created split match ``curator.splits`` called with the same inputs."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console
from sqlalchemy import select

from curator.db import Catalog
from curator.models import Split, SplitExclusion, SplitMember
from curator.settings import Settings
from curator.splits import SplitSpec, create_split, preview_split
from tui.app import CuratorApp
from tui.pilot import settle, type_text
from tui.sample_catalog import SampleCatalog, build_sample_catalog
from tui.screens.splits import SplitsScreen
from tui.services import CuratorServices

SIZE = (120, 44)
FORM = {
    "split-query": "normal cancer original",
    "test-fraction": "0.34",
    "val-fraction": "0.25",
    "seed": "7",
    "synthetic-query": "synthetic derived",
}


@pytest.fixture
def sample(sqlite_settings: Settings, sqlite_catalog: Catalog) -> SampleCatalog:
    """The fixed sample catalog: 12 patients, 24 films, 2 synthetic images and 1 cleaned one."""
    return build_sample_catalog(sqlite_settings, sqlite_catalog)


def spec_of(name: str) -> SplitSpec:
    """The spec that ``FORM`` describes, under another name."""
    return SplitSpec(name=name, query=FORM["split-query"], test_fraction=float(FORM["test-fraction"]),
                     val_fraction=float(FORM["val-fraction"]), seed=int(FORM["seed"]), synthetic_query=FORM["synthetic-query"])


async def fill_form(pilot, name: str) -> None:
    """Type the split name into the splits screen and fill in every field of ``FORM``."""
    screen = pilot.app.screen
    name_field = screen.query_one("#split-name")
    name_field.value = ""
    name_field.focus()
    await type_text(pilot, name)
    for field_id, value in FORM.items():
        screen.query_one(f"#{field_id}").value = value


def rendered_text(renderable) -> str:
    """Render a Rich renderable to plain text, 110 columns wide."""
    console = Console(width=110, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def stored_split(catalog: Catalog, name: str) -> tuple[dict[int, str], dict[int, str], Split]:
    """Return a split's members (id to side), exclusions (id to reason) and row."""
    with catalog.session() as session:
        split = session.scalars(select(Split).where(Split.name == name)).one()
        members = dict(session.execute(select(SplitMember.image_id, SplitMember.side).where(SplitMember.split_id == split.id)).all())
        exclusions = dict(session.execute(select(SplitExclusion.image_id, SplitExclusion.reason).where(SplitExclusion.split_id == split.id)).all())
        return members, exclusions, split


def test_split_from_screen_equals_api_split(sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("2")
            await settle(pilot)
            assert isinstance(app.screen, SplitsScreen)
            await fill_form(pilot, "from-screen")
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert str(app.screen.query_one("#splits").get_row_at(0)[1]) == "from-screen"

    asyncio.run(scenario())
    create_split(sqlite_catalog, spec_of("from-api"))
    screen_members, screen_exclusions, screen_split = stored_split(sqlite_catalog, "from-screen")
    api_members, api_exclusions, api_split = stored_split(sqlite_catalog, "from-api")
    assert screen_members == api_members
    assert screen_exclusions == api_exclusions
    assert (screen_split.query, screen_split.synthetic_query, screen_split.seed) == (api_split.query, api_split.synthetic_query, api_split.seed)
    assert screen_split.params == api_split.params
    assert set(screen_members.values()) == {"train", "val", "test"}


def test_split_preview_shows_plan_counts(sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    plan = preview_split(sqlite_catalog, spec_of("previewed"))

    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("2")
            await settle(pilot)
            await fill_form(pilot, "previewed")
            await pilot.press("ctrl+r")
            await settle(pilot)
            plain = rendered_text(app.screen.query_one("#plan").content)
            labels = sorted({label for per_label in plan.counts.values() for label in per_label})
            header = next(line.split() for line in plain.splitlines() if line.split()[:1] == ["side"])
            assert header == ["side", *labels, "images", "patients"]
            for side, per_label in plan.counts.items():
                row = next(line.split() for line in plain.splitlines() if line.split()[:1] == [side])
                assert row[1:] == [*(str(per_label.get(label, 0)) for label in labels), str(sum(per_label.values())), str(plan.patients[side])]
            excluded = sum(plan.exclusion_counts().values())
            assert excluded > 0
            assert f"{plan.eligible_synthetic} eligible, {plan.added_synthetic} added to train" in plain
            assert f"leakage guard excluded {excluded}:" in plain
            for reason, count in plan.exclusion_counts().items():
                assert f"{count} {reason}" in plain

        # A preview writes nothing.
        with sqlite_catalog.session() as session:
            assert session.scalars(select(Split)).first() is None

    asyncio.run(scenario())


def test_split_form_rejects_invalid_values(sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("2")
            await settle(pilot)
            plan = app.screen.query_one("#plan")

            await pilot.press("ctrl+s")
            await settle(pilot)
            assert str(plan.render()) == "missing split name"

            await fill_form(pilot, "bad")
            app.screen.query_one("#test-fraction").value = "1.5"
            await pilot.press("ctrl+r")
            await settle(pilot)
            assert str(plan.render()) == "test fraction must be between 0 and 1 (exclusive), got 1.5"

            app.screen.query_one("#test-fraction").value = "0.3"
            app.screen.query_one("#split-query").value = "normal cancr"
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert str(plan.render()).startswith("unknown query word 'cancr'")

        with sqlite_catalog.session() as session:
            assert session.scalars(select(Split)).first() is None

    asyncio.run(scenario())
