"""White-marking detector on synthetic films: paint, tissue and the look-alikes it must ignore."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from curator.detectors.markings import (
    DEFAULT_THRESHOLD,
    DETECTOR_NAME,
    DETECTOR_VERSION,
    MarkingParams,
    breast_mask,
    detect_markings,
)
from curator.detectors.breast import working_copy
from curator.detectors.synthetic import add_half_disc, add_paint, synthetic_film

PAINT_BOX = (430, 60, 130, 180)


@pytest.fixture(scope="module")
def film() -> np.ndarray:
    return synthetic_film(height=1200, width=600, chest_wall="left")


def test_paint_in_far_corner_is_detected(film: np.ndarray) -> None:
    result = detect_markings(add_paint(film, PAINT_BOX))

    assert result.marked
    assert result.score >= 0.99
    assert len(result.boxes) == 1
    # The working copy is 512 px tall here (scale 2.34), so a box edge can move by
    # about one working pixel.
    for found, truth in zip(result.boxes[0], PAINT_BOX):
        assert abs(found - truth) <= 4


def test_box_is_in_full_resolution_coordinates(film: np.ndarray) -> None:
    result = detect_markings(add_paint(film, PAINT_BOX))

    assert result.full_shape == (1200, 600)
    assert result.working_shape == (512, 256)
    x, y, width, height = result.boxes[0]
    assert x + width <= 600
    assert height > 170


def test_working_copy_with_full_shape_gives_same_box(film: np.ndarray) -> None:
    painted = add_paint(film, PAINT_BOX)
    from_full = detect_markings(painted)
    from_copy = detect_markings(working_copy(painted), full_shape=painted.shape)

    assert from_copy.boxes == from_full.boxes
    assert from_copy.score == pytest.approx(from_full.score)


def test_clean_film_is_not_marked(film: np.ndarray) -> None:
    result = detect_markings(film)

    assert not result.marked
    assert result.score == 0.0
    assert result.boxes == []
    assert result.candidates == []


def test_rectangle_inside_breast_is_not_marked(film: np.ndarray) -> None:
    # Documented behaviour: a flat white region surrounded by tissue is scored down
    # (implant, saturated dense tissue), even though its shape is paint-like.
    result = detect_markings(add_paint(film, (100, 500, 120, 160)))

    assert not result.marked
    assert result.boxes == []
    assert len(result.candidates) == 1
    candidate = result.candidates[0]
    assert candidate.tissue_fraction > 0.95
    assert candidate.score == pytest.approx(MarkingParams().enclosed_weight)


def test_paint_against_skin_line_is_marked(film: np.ndarray) -> None:
    # Half on the breast, half on the film background.
    result = detect_markings(add_paint(film, (360, 500, 120, 120)))

    assert result.marked
    assert 0.1 < result.candidates[0].tissue_fraction < 0.6


def test_punch_hole_is_not_marked(film: np.ndarray) -> None:
    result = detect_markings(add_half_disc(film, centre_x=300, radius=30))

    assert not result.marked
    assert result.score < 0.01


def test_thin_border_strip_is_not_marked(film: np.ndarray) -> None:
    # Large enough to pass the size rule (1 % of the film), but too thin for paint.
    result = detect_markings(add_paint(film, (0, 0, 600, 12)))

    assert not result.marked
    candidate = result.candidates[0]
    assert candidate.area_fraction > 0.008
    assert candidate.thickness < 0.03


def test_textured_bright_region_is_not_marked(film: np.ndarray) -> None:
    # Smooth blobs spread evenly over 245-255, coarse enough to survive the shrinking.
    rng = np.random.default_rng(3)
    blobs = cv2.GaussianBlur(rng.normal(0.0, 1.0, (180, 130)), (0, 0), 8)
    ranks = blobs.argsort(axis=None).argsort().reshape(blobs.shape) / blobs.size
    textured = film.copy()
    textured[60:240, 430:560] = (245 + 10.99 * ranks).astype(np.uint8)

    result = detect_markings(textured)

    assert not result.marked
    assert result.candidates[0].intensity_std > 2.5


def test_threshold_decides_marked(film: np.ndarray) -> None:
    painted = add_paint(film, (100, 500, 120, 160))

    assert detect_markings(painted, threshold=0.25).marked
    assert not detect_markings(painted, threshold=DEFAULT_THRESHOLD).marked


def test_paint_on_right_edge_film(film: np.ndarray) -> None:
    mirrored = np.ascontiguousarray(film[:, ::-1])
    result = detect_markings(add_paint(mirrored, (40, 60, 130, 180)))

    assert result.chest_wall == "right"
    assert result.marked
    assert abs(result.boxes[0][0] - 40) <= 4


def test_breast_mask_covers_ellipse(film: np.ndarray) -> None:
    mask = breast_mask(film)

    assert mask.shape == (512, 256)
    # The ellipse is 0.7 of the width deep and 0.8 of the height tall.
    assert mask[256, 5]
    assert mask[256, 170]
    assert not mask[256, 200]
    assert not mask[20, 5]
    expected_area = np.pi * (0.7 * 256) * (0.4 * 512) / 2
    assert mask.sum() == pytest.approx(expected_area, rel=0.1)


def test_breast_mask_leaves_out_paint_on_background(film: np.ndarray) -> None:
    mask = breast_mask(add_paint(film, PAINT_BOX))

    # The paint centre in working-copy pixels.
    assert not mask[64, 211]


def test_result_serialises_to_json(film: np.ndarray) -> None:
    result = detect_markings(add_paint(film, PAINT_BOX))
    record = json.loads(json.dumps(result.to_dict()))

    assert record["detector"] == DETECTOR_NAME
    assert record["version"] == DETECTOR_VERSION
    assert record["marked"] is True
    assert record["boxes"] == [list(result.boxes[0])]
    assert record["candidates"][0]["box"] == list(result.boxes[0])


def test_params_round_trip_through_dict() -> None:
    params = MarkingParams(bright_level=240, thickness=(0.05, 0.1))
    values = json.loads(json.dumps(params.to_dict()))

    assert values["bright_level"] == 240
    assert values["thickness"] == [0.05, 0.1]
    rebuilt = MarkingParams(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})
    assert rebuilt == params


def test_rejects_colour_image() -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        detect_markings(np.zeros((100, 100, 3), np.uint8))
