"""Browse screen: the live query count, query errors, paging of large results and the look screen."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert

from curator.catalog import count_images, find_images
from curator.db import Catalog
from curator.models import Image
from curator.query import parse
from curator.settings import Settings
from tui.app import CuratorApp
from tui.pilot import settle, type_query
from tui.sample_catalog import SampleCatalog, build_sample_catalog
from tui.screens.look import LookScreen
from tui.services import PAGE_SIZE, CuratorServices
from tui.widgets import ImageTable

SIZE = (120, 40)


@pytest.fixture
def sample(sqlite_settings: Settings, sqlite_catalog: Catalog) -> SampleCatalog:
    """The fixed sample catalog: 12 patients, 24 films, 2 synthetic images and 1 cleaned one."""
    return build_sample_catalog(sqlite_settings, sqlite_catalog)


def status_text(app: CuratorApp) -> str:
    """Return the plain text of the browse status line."""
    return str(app.screen.query_one("#query-status").render())


def table_ids(app: CuratorApp) -> list[int]:
    """Return the image ids of the loaded table rows, in order."""
    return [row.id for row in app.screen.query_one(ImageTable).loaded_rows()]


def test_typed_query_filters_table(sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert status_text(app) == f"{count_images(sqlite_catalog, parse(''))} images in the catalog"

            await type_query(pilot, "cancer cc-left")
            query = parse("cancer cc-left")
            expected = [image.id for image in find_images(sqlite_catalog, query)]
            assert count_images(sqlite_catalog, query) == 3
            assert status_text(app) == "3 images match 'cancer CC-left'"
            assert table_ids(app) == expected

            await type_query(pilot, "-cancer original")
            expected = [image.id for image in find_images(sqlite_catalog, parse("-cancer original"))]
            assert status_text(app) == f"{len(expected)} images match '{parse('-cancer original')}'"
            assert table_ids(app) == expected

    asyncio.run(scenario())


def test_unknown_word_shows_closest_words(sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            rows_before = table_ids(app)
            await type_query(pilot, "cancr")
            text = status_text(app)
            assert text.startswith("unknown query word 'cancr'")
            assert "closest known words: cancer" in text
            assert app.screen.query_one("#query-status").has_class("error")
            # The table keeps the last valid result instead of going blank.
            assert table_ids(app) == rows_before

    asyncio.run(scenario())


def _bulk_images(catalog: Catalog, count: int) -> None:
    rows = [
        {"sha256": f"{number:064x}", "file_path": f"/nowhere/{number}.png", "file_size": 1, "width": 8, "height": 8,
         "bit_depth": 8, "file_format": "png", "dataset": "bulk", "label": ("normal", "benign", "cancer")[number % 3],
         "view": "CC", "side": "LEFT", "origin": "original", "params": {}, "extra": {}}
        for number in range(count)
    ]
    with catalog.transaction() as session:
        session.execute(insert(Image), rows)


def test_table_loads_only_pages_in_view(sqlite_settings: Settings, sqlite_catalog: Catalog) -> None:
    async def scenario() -> None:
        # A third of the bulk rows are normal: ten full pages and a part page of them.
        _bulk_images(sqlite_catalog, 3 * (10 * PAGE_SIZE + 50))
        expected = [image.id for image in find_images(sqlite_catalog, parse("normal"))]
        assert len(expected) == 10 * PAGE_SIZE + 50
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await type_query(pilot, "normal")
            table = app.screen.query_one(ImageTable)
            assert table.total == len(expected)
            assert table_ids(app) == expected[:PAGE_SIZE]
            assert str(app.screen.query_one("#position").render()) == f"row 1 of {len(expected)}"

            table.focus()
            await pilot.press("end")
            await settle(pilot)
            # Only the last page, the one in view, is read; the pages in between never are.
            assert table_ids(app) == expected[:PAGE_SIZE] + expected[10 * PAGE_SIZE :]
            assert table.image_id_at_cursor() == expected[-1]
            assert str(app.screen.query_one("#position").render()) == f"row {len(expected)} of {len(expected)}"

            # Scrolling back up into page 9 loads it, read by OFFSET because page 8 is not loaded.
            for _ in range(3):
                await pilot.press("pageup")
            await settle(pilot)
            assert table.cursor_row < 10 * PAGE_SIZE
            assert table_ids(app) == expected[:PAGE_SIZE] + expected[9 * PAGE_SIZE :]
            assert table.image_id_at_cursor() == expected[table.cursor_row]

            await pilot.press("home")
            await settle(pilot)
            assert table.image_id_at_cursor() == expected[0]

    asyncio.run(scenario())


def test_keyset_page_equals_offset_page(sqlite_settings: Settings, sqlite_catalog: Catalog) -> None:
    _bulk_images(sqlite_catalog, 3 * PAGE_SIZE)
    services = CuratorServices(sqlite_settings, sqlite_catalog)
    query = parse("-benign")
    first = services.page(query)
    by_offset = services.page(query, offset=PAGE_SIZE)
    by_keyset = services.page(query, offset=PAGE_SIZE, after_id=first[-1].id)
    assert len(by_offset) == PAGE_SIZE
    assert by_keyset == by_offset
    assert [row.id for row in first + by_offset] == [image.id for image in find_images(sqlite_catalog, query)]


def test_enter_opens_look_screen_and_lineage(sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await type_query(pilot, "synthetic")
            await pilot.press("escape", "enter")
            await settle(pilot)
            assert isinstance(app.screen, LookScreen)
            assert app.screen.image_id == sample.synthetic_ids[0]
            lineage = app.screen.query_one("#lineage")
            assert lineage.row_count == 2

            lineage.focus()
            lineage.move_cursor(row=1)
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, LookScreen)
            assert app.screen.image_id == sample.original_ids[1]
            children = app.screen.query_one("#lineage")
            assert [children.get_row_at(index)[1] for index in range(children.row_count)] == [str(image_id) for image_id in sample.synthetic_ids]

            await pilot.press("escape")
            await settle(pilot)
            assert app.screen.image_id == sample.synthetic_ids[0]

    asyncio.run(scenario())
