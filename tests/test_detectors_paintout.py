"""Paint-out on synthetic films: paint replaced by background or tissue, nothing else touched."""

from __future__ import annotations

import numpy as np
import pytest

from curator.detectors.markings import detect_markings
from curator.detectors.paintout import RIM_FRACTION, full_resolution_breast_mask, paint_mask, paint_out
from curator.detectors.synthetic import BACKGROUND_LEVEL, add_paint, synthetic_film

PAINT_BOX = (430, 60, 130, 180)


@pytest.fixture(scope="module")
def film() -> np.ndarray:
    return synthetic_film(height=1200, width=600, chest_wall="left")


def _outside(box: tuple[int, int, int, int], margin: int, shape: tuple[int, int]) -> np.ndarray:
    x, y, width, height = box
    keep = np.ones(shape, bool)
    keep[max(0, y - margin) : y + height + margin, max(0, x - margin) : x + width + margin] = False
    return keep


def test_paint_on_background_becomes_background(film: np.ndarray) -> None:
    painted = add_paint(film, PAINT_BOX)
    cleaned = paint_out(painted, [PAINT_BOX])

    x, y, width, height = PAINT_BOX
    inside = cleaned[y : y + height, x : x + width]
    assert inside.mean() < 30
    assert abs(float(np.median(inside)) - BACKGROUND_LEVEL) <= 3
    assert inside.max() < 245


def test_pixels_outside_grown_box_are_unchanged(film: np.ndarray) -> None:
    painted = add_paint(film, PAINT_BOX)
    cleaned = paint_out(painted, [PAINT_BOX])

    rim = max(3, round(600 * RIM_FRACTION))
    keep = _outside(PAINT_BOX, rim + 1, painted.shape)
    assert np.array_equal(cleaned[keep], painted[keep])


def test_input_array_is_not_modified(film: np.ndarray) -> None:
    painted = add_paint(film, PAINT_BOX)
    before = painted.copy()

    cleaned = paint_out(painted, [PAINT_BOX])

    assert np.array_equal(painted, before)
    assert cleaned is not painted


def test_no_bright_rim_remains(film: np.ndarray) -> None:
    # Paint with a blurred rim, as the scanner and JPEG leave it.
    painted = add_paint(film, PAINT_BOX)
    x, y, width, height = PAINT_BOX
    painted[y - 2 : y, x : x + width] = 200
    painted[y + height : y + height + 2, x : x + width] = 200

    cleaned = paint_out(painted, [PAINT_BOX])

    assert cleaned[y - 2 : y + height + 2, x : x + width].max() < 60


def test_detected_boxes_paint_out_cleanly(film: np.ndarray) -> None:
    painted = add_paint(film, PAINT_BOX)
    result = detect_markings(painted)

    cleaned = paint_out(painted, result.boxes)

    assert (cleaned >= 245).sum() == 0
    assert not detect_markings(cleaned).marked


def test_paint_over_skin_line_is_inpainted_with_tissue(film: np.ndarray) -> None:
    # The breast's skin line crosses this box near x = 412 at these rows.
    box = (360, 500, 120, 120)
    painted = add_paint(film, box)

    cleaned = paint_out(painted, [box])

    assert (cleaned[500:620, 360:480] >= 245).sum() == 0
    # Under the paint, on the breast side: tissue-like, not flat background.
    assert cleaned[560, 370] > 100
    # Under the paint, well outside the breast: background.
    assert cleaned[560, 470] < 40
    # Over the whole bite, restored tissue lifts the mean well above the background.
    y, x = np.mgrid[0:1200, 0:600]
    in_breast = (x / 420) ** 2 + ((y - 600) / 480) ** 2 <= 1
    under_paint = np.zeros(painted.shape, bool)
    under_paint[500:620, 360:480] = True
    assert cleaned[under_paint & in_breast].mean() > 60


def test_given_breast_mask_is_used(film: np.ndarray) -> None:
    box = (360, 500, 120, 120)
    painted = add_paint(film, box)
    no_tissue = np.zeros(painted.shape, bool)

    cleaned = paint_out(painted, [box], breast_mask=no_tissue)

    # With no tissue anywhere, every paint pixel takes the flat background level.
    assert cleaned[560, 370] < 40


def test_paint_mask_follows_paint_past_its_box(film: np.ndarray) -> None:
    painted = add_paint(film, PAINT_BOX)
    too_small = (450, 80, 100, 100)

    mask = paint_mask(painted, [too_small])

    # Reached: paint joined to the box's paint, up to half the box size beyond it.
    assert mask[70, 440]
    assert mask[225, 545]
    # Not reached: farther than that, and tissue.
    assert not mask[238, 545]
    assert not mask[600, 100]


def test_breast_mask_shape_is_checked(film: np.ndarray) -> None:
    with pytest.raises(ValueError, match="breast_mask has shape"):
        paint_out(film, [PAINT_BOX], breast_mask=np.zeros((10, 10), bool))


def test_no_boxes_returns_equal_copy(film: np.ndarray) -> None:
    cleaned = paint_out(film, [])

    assert np.array_equal(cleaned, film)
    assert cleaned is not film


def test_full_resolution_breast_mask_has_film_shape(film: np.ndarray) -> None:
    mask = full_resolution_breast_mask(film)

    assert mask.shape == film.shape
    assert mask[600, 10]
    assert not mask[600, 590]
