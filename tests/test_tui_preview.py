"""Previews: boxes drawn into the pixels, half-block rendering, and the box coordinates the services hand over."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
from rich.color import Color
from rich.console import Console

from curator.db import Catalog
from curator.models import Image
from curator.settings import Settings
from tui.app import CuratorApp
from tui.pilot import settle
from tui.preview import CURATOR_COLOUR, DETECTOR_COLOUR, UPPER_HALF_BLOCK, GraphicsPreview, HalfBlockImage, draw_boxes, fit_size, render_pixels
from tui.sample_catalog import MARKING_BOX, build_sample_catalog
from tui.screens.look import LookScreen
from tui.services import CuratorServices, PreviewSource


def test_draw_boxes_outlines_only_the_box_edge() -> None:
    gray = np.full((10, 12), 50, dtype=np.uint8)
    rgb = draw_boxes(gray, [[2, 3, 4, 5]], (255, 0, 0))
    red = np.all(rgb == (255, 0, 0), axis=2)
    expected = np.zeros((10, 12), dtype=bool)
    expected[3, 2:6] = expected[7, 2:6] = True
    expected[3:8, 2] = expected[3:8, 5] = True
    assert np.array_equal(red, expected)
    assert np.all(rgb[~expected] == 50)


def test_draw_boxes_clips_box_leaving_image() -> None:
    gray = np.zeros((6, 6), dtype=np.uint8)
    rgb = draw_boxes(gray, [[4, 4, 10, 10]], (0, 255, 0))
    green = np.all(rgb == (0, 255, 0), axis=2)
    for corner in ((4, 4), (4, 5), (5, 4), (5, 5)):
        assert green[corner]
    assert green.sum() == 4


def test_fit_size_keeps_aspect_ratio() -> None:
    assert fit_size(48, 64, 20, 20) == (15, 20)
    assert fit_size(200, 100, 50, 100) == (50, 25)
    assert fit_size(5000, 10, 10, 10) == (10, 1)


def test_render_pixels_scales_boxes_with_image() -> None:
    source = PreviewSource(pixels=np.zeros((40, 20), dtype=np.uint8), boxes=[[10, 20, 10, 20]], curator_boxes=[[0, 0, 4, 4]])
    rgb = render_pixels(source, 10, 20)
    assert rgb.shape == (20, 10, 3)
    detector = np.all(rgb == DETECTOR_COLOUR, axis=2)
    curator = np.all(rgb == CURATOR_COLOUR, axis=2)
    # Halved: the detector box covers columns 5-9 and rows 10-19, the curator box 0-1 both ways.
    for corner in ((10, 5), (10, 9), (19, 5), (19, 9)):
        assert detector[corner]
    assert not detector[:10].any()
    assert not detector[:, :5].any()
    assert curator[0, 0]
    assert curator[1, 1]
    assert not curator[2:].any()


def test_half_block_pairs_rows_as_foreground_and_background() -> None:
    rgb = np.array([[[255, 0, 0], [0, 0, 255]], [[0, 255, 0], [9, 9, 9]], [[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
    segments = list(Console(width=20).render(HalfBlockImage(rgb)))
    cells = [segment for segment in segments if segment.text == UPPER_HALF_BLOCK]
    assert len(cells) == 4
    assert cells[0].style.color == Color.from_rgb(255, 0, 0)
    assert cells[0].style.bgcolor == Color.from_rgb(0, 255, 0)
    assert cells[1].style.color == Color.from_rgb(0, 0, 255)
    assert cells[1].style.bgcolor == Color.from_rgb(9, 9, 9)
    # The odd last row is paired with black.
    assert cells[2].style.color == Color.from_rgb(1, 2, 3)
    assert cells[2].style.bgcolor == Color.from_rgb(0, 0, 0)
    assert sum(1 for segment in segments if segment.text == "\n") == 2


def test_preview_falls_back_to_working_derivative(sqlite_settings: Settings, sqlite_catalog: Catalog) -> None:
    sample = build_sample_catalog(sqlite_settings, sqlite_catalog, patients_per_label=2)
    marked = next(image_id for image_id in sample.original_ids if sample.scores[image_id] >= 0.5)
    services = CuratorServices(sqlite_settings, sqlite_catalog)

    source = services.preview(marked)
    assert source.pixels.shape == (64, 48)
    assert source.boxes == [[float(value) for value in MARKING_BOX]]
    assert source.note is None

    # Move the original away and leave a 32x32 stretched working derivative in its place.
    with sqlite_catalog.transaction() as session:
        image = session.get(Image, marked)
        original = cv2.imread(image.file_path, cv2.IMREAD_GRAYSCALE)
        work = sqlite_settings.home / "store" / "work-32.png"
        cv2.imwrite(str(work), cv2.resize(original, (32, 32), interpolation=cv2.INTER_AREA))
        image.file_path = str(sqlite_settings.home / "gone.png")
        image.work_path = "store/work-32.png"

    source = services.preview(marked)
    assert source.pixels.shape == (32, 32)
    x, y, w, h = MARKING_BOX
    assert source.boxes == [[x * 32 / 48, y * 32 / 64, w * 32 / 48, h * 32 / 64]]
    assert source.note == "original file missing: showing the working derivative"


def test_preview_shrinks_large_films(sqlite_settings: Settings, sqlite_catalog: Catalog) -> None:
    build_sample_catalog(sqlite_settings, sqlite_catalog, patients_per_label=1)
    film = np.zeros((1000, 600), dtype=np.uint8)
    path = sqlite_settings.home / "large.png"
    cv2.imwrite(str(path), film)
    with sqlite_catalog.transaction() as session:
        image = Image(sha256="f" * 64, file_path=str(path), work_path=None, file_size=1, width=600, height=1000,
                      file_format="png", dataset="test", origin="original", params={}, extra={})
        session.add(image)
        session.flush()
        image_id = image.id
    source = CuratorServices(sqlite_settings, sqlite_catalog).preview(image_id, max_side=200)
    assert source.pixels.shape == (200, 120)


def test_graphics_preview_gets_picture_with_boxes(sqlite_settings: Settings, sqlite_catalog: Catalog) -> None:
    sample = build_sample_catalog(sqlite_settings, sqlite_catalog, patients_per_label=2)
    marked = next(image_id for image_id in sample.original_ids if sample.scores[image_id] >= 0.5)

    async def scenario() -> None:
        app = CuratorApp(CuratorServices(sqlite_settings, sqlite_catalog), graphics=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await app.push_screen(LookScreen(marked))
            await settle(pilot)
            preview = app.screen.query_one("#preview")
            assert isinstance(preview, GraphicsPreview)
            picture = np.asarray(preview.query_one("#terminal-image").image)
            assert picture.shape == (64, 48, 3)
            x, y, w, h = MARKING_BOX
            assert tuple(picture[y, x]) == DETECTOR_COLOUR
            assert tuple(picture[y + h - 1, x + w - 1]) == DETECTOR_COLOUR

    asyncio.run(scenario())
