"""SVG snapshots of the main screens on the fixed sample catalog (pytest-textual-snapshot).

Run ``pytest tests/test_tui_snapshots.py --snapshot-update`` after an intended change of the
layout, and look at the new files in tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import pytest

from curator.db import Catalog
from curator.models import Job
from curator.settings import Settings
from tui.app import CuratorApp
from tui.pilot import settle, type_query
from tui.sample_catalog import FIXED_TIME, SampleCatalog, build_sample_catalog
from tui.screens.look import LookScreen
from tui.services import CuratorServices

SIZE = (120, 36)


@pytest.fixture
def sample(sqlite_settings: Settings, sqlite_catalog: Catalog) -> SampleCatalog:
    """The fixed sample catalog: 12 patients, 24 films, 2 synthetic images and 1 cleaned one."""
    return build_sample_catalog(sqlite_settings, sqlite_catalog)


def make_app(settings: Settings, catalog: Catalog) -> CuratorApp:
    """An app on the test catalog with half-block previews, as in a terminal without graphics."""
    return CuratorApp(CuratorServices(settings, catalog), graphics=False)


def test_browse_snapshot(snap_compare, sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await type_query(pilot, "normal original")
        await pilot.press("escape", "down", "down")
        await settle(pilot)

    assert snap_compare(make_app(sqlite_settings, sqlite_catalog), terminal_size=SIZE, run_before=run_before)


def test_look_snapshot(snap_compare, sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    # The first film the detector flagged: its box is drawn and its cleaned child is listed.
    marked = next(image_id for image_id in sample.original_ids if sample.scores[image_id] >= 0.5)

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.app.push_screen(LookScreen(marked))
        await settle(pilot)

    assert snap_compare(make_app(sqlite_settings, sqlite_catalog), terminal_size=SIZE, run_before=run_before)


def test_splits_snapshot(snap_compare, sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    fields = {"split-name": "normal-vs-cancer", "split-query": "normal cancer original", "test-fraction": "0.34",
              "seed": "3", "synthetic-query": "synthetic derived"}

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        for field_id, value in fields.items():
            pilot.app.screen.query_one(f"#{field_id}").value = value
        await pilot.press("ctrl+r")
        await settle(pilot)
        pilot.app.screen.query_one("#splits").focus()
        await settle(pilot)

    assert snap_compare(make_app(sqlite_settings, sqlite_catalog), terminal_size=(120, 44), run_before=run_before)


def test_jobs_snapshot(snap_compare, sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    with sqlite_catalog.transaction() as session:
        session.add(Job(kind="import", status="done", progress=24, total=24, message="imported 24", log="imported 24 images\n",
                        params={"command": ["import", "folder", "/data/new"]}, created_at=FIXED_TIME, started_at=FIXED_TIME, finished_at=FIXED_TIME))
        session.add(Job(kind="detect", status="failed", progress=3, total=24, error="cannot read /data/new/3.png",
                        params={"command": ["detect", "markings"]}, created_at=FIXED_TIME, started_at=FIXED_TIME, finished_at=FIXED_TIME))
        session.add(Job(kind="glow", status="running", progress=150, total=600, message="step 150: 4.91 bits/dim",
                        log="step 100: 5.12 bits/dim\nstep 150: 4.91 bits/dim\n",
                        params={"command": ["glow", "train", "normal-cc"]}, created_at=FIXED_TIME, started_at=FIXED_TIME))

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)

    assert snap_compare(make_app(sqlite_settings, sqlite_catalog), terminal_size=SIZE, run_before=run_before)


def test_help_snapshot(snap_compare, sqlite_settings: Settings, sqlite_catalog: Catalog, sample: SampleCatalog) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(make_app(sqlite_settings, sqlite_catalog), terminal_size=(120, 44), run_before=run_before)
