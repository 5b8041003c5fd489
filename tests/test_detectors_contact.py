"""Contact sheets and box drawing: what lands in the PNG and where."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from curator.detectors.contact import BOX_COLOUR, contact_sheet, draw_boxes


def _is_box_colour(pixels: np.ndarray) -> np.ndarray:
    return np.all(pixels == np.array(BOX_COLOUR, np.uint8), axis=-1)


def test_draw_boxes_outlines_box_only() -> None:
    image = np.full((200, 100), 50, np.uint8)

    drawn = draw_boxes(image, [(20, 30, 40, 50)], thickness=2)

    assert drawn.shape == (200, 100, 3)
    assert _is_box_colour(drawn[30, 20:60]).all()
    assert _is_box_colour(drawn[30:80, 20]).all()
    assert _is_box_colour(drawn[79, 20:60]).all()
    # Inside and outside the outline the film is untouched grey.
    assert (drawn[55, 40] == 50).all()
    assert (drawn[150, 50] == 50).all()
    # The input is not drawn on.
    assert image.ndim == 2
    assert (image == 50).all()


def test_contact_sheet_writes_png_with_tiles(tmp_path: Path) -> None:
    before = np.full((400, 200), 200, np.uint8)
    after = np.full((400, 200), 20, np.uint8)

    path = contact_sheet(
        [("first", before, after), ("second", before, None)],
        tmp_path / "sheets" / "check.png",
        thumb_height=128,
        boxes=[[(50, 50, 100, 100)], []],
        columns=2,
    )

    assert path.exists()
    sheet = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    # One row: label strip plus thumbnail height.
    assert sheet.shape[0] == 22 + 128
    # The first tile contains a bright "before", a dark "after" and a red box.
    tile_row = sheet[22 + 100]
    assert (tile_row[:60] >= 190).all(axis=-1).any()
    assert (tile_row[70:130] <= 30).all(axis=-1).any()
    assert _is_box_colour(sheet[22:, :64]).any()


def test_contact_sheet_checks_box_count(tmp_path: Path) -> None:
    image = np.zeros((50, 50), np.uint8)

    with pytest.raises(ValueError, match="one list per pair"):
        contact_sheet([("a", image, image)], tmp_path / "x.png", boxes=[[], []])


def test_contact_sheet_needs_pairs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        contact_sheet([], tmp_path / "x.png")
