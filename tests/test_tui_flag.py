"""Flag keys, undo and the review walks, checked against the catalog through fresh sessions."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import select

from curator.db import Catalog
from curator.models import Image, MarkingVerdict
from curator.settings import Settings
from tui.app import CuratorApp
from tui.pilot import settle, type_query
from tui.sample_catalog import SampleCatalog, build_sample_catalog
from tui.screens.browse import BrowseScreen
from tui.screens.look import LookScreen
from tui.services import DETECTOR_THRESHOLD, CuratorServices
from tui.widgets import ImageTable

SIZE = (120, 40)


@pytest.fixture
def sample(sqlite_settings: Settings, sqlite_catalog: Catalog) -> SampleCatalog:
    """The fixed sample catalog: 12 patients, 24 films, 2 synthetic images and 1 cleaned one."""
    return build_sample_catalog(sqlite_settings, sqlite_catalog)


def stored_verdict(settings: Settings, image_id: int) -> tuple[bool | None, list[bool | None]]:
    """Read an image's current verdict and its verdict history through a new catalog connection."""
    fresh = Catalog(settings.database_url)
    try:
        with fresh.session() as session:
            current = session.get(Image, image_id).marking_verdict
            history = list(session.scalars(select(MarkingVerdict.marked).where(MarkingVerdict.image_id == image_id).order_by(MarkingVerdict.id)))
        return current, history
    finally:
        fresh.dispose()


def test_flag_key_writes_verdict_and_undo_reverts(sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    target = sample.original_ids[4]

    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog, curator="tester"))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            table = app.screen.query_one(ImageTable)
            table.cursor_row = table.index_of(target)
            await pilot.press("m")
            await settle(pilot)
            assert stored_verdict(sqlite_settings, target) == (True, [True])
            assert table.cell_text(target, "verdict") == "marked"
            assert table.cell_text(target, "marking") == "marked"

            await pilot.press("u")
            await settle(pilot)
            assert stored_verdict(sqlite_settings, target) == (False, [True, False])

            await pilot.press("z")
            await settle(pilot)
            assert stored_verdict(sqlite_settings, target) == (True, [True, False, True])
            await pilot.press("z")
            await settle(pilot)
            # Back to no verdict; each undo is kept in the history as a verdict of its own.
            assert stored_verdict(sqlite_settings, target) == (None, [True, False, True, None])
            assert table.cell_text(target, "verdict") == "-"

            await pilot.press("z")
            await settle(pilot)
            assert stored_verdict(sqlite_settings, target) == (None, [True, False, True, None])

        with sqlite_catalog.session() as session:
            curators = set(session.scalars(select(MarkingVerdict.curator).where(MarkingVerdict.image_id == target)))
        assert curators == {"tester"}

    asyncio.run(scenario())


def test_review_uncertain_walks_nearest_threshold(sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    unreviewed = [image_id for image_id in sample.original_ids if image_id not in sample.disputed_ids]
    expected = sorted(unreviewed, key=lambda image_id: (abs(sample.scores[image_id] - DETECTOR_THRESHOLD), image_id))

    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("r")
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, LookScreen)
            assert screen.review is not None
            assert screen.review.image_ids == expected
            assert screen.image_id == expected[0]

            await pilot.press("u")
            await settle(pilot)
            assert stored_verdict(sqlite_settings, expected[0])[0] is False
            assert screen.image_id == expected[1]
            assert str(screen.query_one("#review-status").render()) == f"review uncertain: 2 of {len(expected)}, 1 decided"

            await pilot.press("n")
            await settle(pilot)
            assert screen.image_id == expected[2]
            assert stored_verdict(sqlite_settings, expected[1]) == (None, [])

            await pilot.press("m")
            await settle(pilot)
            assert stored_verdict(sqlite_settings, expected[2])[0] is True
            await pilot.press("z")
            await settle(pilot)
            # Undo returns to the image whose verdict it restored.
            assert screen.image_id == expected[2]
            assert stored_verdict(sqlite_settings, expected[2])[0] is None
            assert screen.review.decided == 1

            await pilot.press("escape")
            await settle(pilot)
            assert isinstance(app.screen, BrowseScreen)
            table = app.screen.query_one(ImageTable)
            assert table.cell_text(expected[0], "verdict") == "unmarked"

    asyncio.run(scenario())


def test_review_disputed_within_query(sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    with sqlite_catalog.session() as session:
        cancer_disputed = [image_id for image_id in sample.disputed_ids if session.get(Image, image_id).label == "cancer"]
    assert cancer_disputed

    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await type_query(pilot, "cancer")
            await pilot.press("escape", "d")
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, LookScreen)
            assert screen.review.image_ids == sorted(cancer_disputed)

            # Deciding every disputed image ends the walk on this screen.
            for image_id in sorted(cancer_disputed):
                assert screen.image_id == image_id
                detected = sample.scores[image_id] >= DETECTOR_THRESHOLD
                await pilot.press("m" if detected else "u")
                await settle(pilot)
                assert stored_verdict(sqlite_settings, image_id)[0] is detected
            status = str(screen.query_one("#review-status").render())
            assert status == f"review disputed finished: {len(cancer_disputed)} decided of {len(cancer_disputed)}"

    asyncio.run(scenario())


def test_review_of_nothing_stays_on_browse(sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await type_query(pilot, "synthetic")
            await pilot.press("escape", "d")
            await settle(pilot)
            assert isinstance(app.screen, BrowseScreen)

    asyncio.run(scenario())


def test_flag_waits_for_concurrent_writer(sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    target = sample.original_ids[0]
    # Another process (an import, say) holds the write lock until it commits.
    blocker = sqlite3.connect(sqlite_settings.home / "catalog.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    blocker.execute("UPDATE images SET case_id = 'held' WHERE id = ?", (sample.original_ids[5],))

    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            table = app.screen.query_one(ImageTable)
            await pilot.press("m", "down", "down")
            await pilot.pause(0.3)
            # The keys after the flag were handled while its write waits for the lock.
            assert table.cursor_row == 2
            assert stored_verdict(sqlite_settings, target) == (None, [])

            blocker.execute("COMMIT")
            await settle(pilot)
            assert stored_verdict(sqlite_settings, target) == (True, [True])
            assert table.cell_text(target, "verdict") == "marked"

    try:
        asyncio.run(scenario())
    finally:
        blocker.close()
