"""Browse screen on a catalog of 100,000 images: only the pages in view are read, and moving
through the whole result costs the same at any depth."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import insert

from curator.db import Catalog
from curator.models import Image
from curator.settings import Settings
from tui.app import CuratorApp
from tui.pilot import settle
from tui.services import PAGE_SIZE, CuratorServices
from tui.widgets import ImageTable

IMAGES = 100_000


@pytest.mark.slow
def test_browse_hundred_thousand_images(sqlite_settings: Settings, sqlite_catalog: Catalog) -> None:
    rows = [
        {"sha256": f"{number:064x}", "file_path": f"/nowhere/{number}.png", "file_size": 1, "width": 8, "height": 8,
         "bit_depth": 8, "file_format": "png", "dataset": "bulk", "label": ("normal", "benign", "cancer")[number % 3],
         "view": ("CC", "MLO")[number % 2], "side": "LEFT", "origin": "original", "params": {}, "extra": {}}
        for number in range(IMAGES)
    ]
    with sqlite_catalog.transaction() as session:
        session.execute(insert(Image), rows)

    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        started = time.perf_counter()
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(ImageTable)
            opened = time.perf_counter() - started
            assert table.total == IMAGES
            assert len(table.loaded_rows()) == PAGE_SIZE

            started = time.perf_counter()
            await pilot.press("end")
            await settle(pilot)
            to_end = time.perf_counter() - started
            assert table.image_id_at_cursor() == IMAGES
            assert len(table.loaded_rows()) == 2 * PAGE_SIZE

            started = time.perf_counter()
            for _ in range(30):
                await pilot.press("pageup")
            await settle(pilot)
            per_page = (time.perf_counter() - started) / 30
            assert table.image_id_at_cursor() == table.cursor_row + 1
            # 30 screens of about 38 rows span 6 pages near the end, never the 490 in between.
            assert len(table.loaded_rows()) <= 8 * PAGE_SIZE
            print(f"\n{IMAGES} images: open {opened:.2f} s, end key {to_end * 1000:.0f} ms, page up {per_page * 1000:.0f} ms per key")

    asyncio.run(scenario())
