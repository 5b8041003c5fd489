"""Detectors on the real sample films: paint, its look-alikes, geometry and the manifest scores."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from curator.detectors.evaluate import evaluate_manifest
from curator.detectors.geometry import check_geometry, ddsm_scanner
from curator.detectors.markings import detect_markings, load_for_detection
from curator.detectors.paintout import paint_out

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MAMMO = DATA / "mammo-sample"
MIAS = DATA / "mias-sample"

pytestmark = pytest.mark.skipif(
    not (MAMMO / "manifest.csv").exists() or not (MIAS / "manifest.csv").exists(),
    reason="real sample films not found next to the repository (shared/data)",
)


def _detect(path: Path):
    work, full_shape = load_for_detection(path)
    return detect_markings(work, full_shape=full_shape)


def test_load_for_detection_shrinks_and_reports_full_size() -> None:
    work, full_shape = load_for_detection(MAMMO / "Normal/0011/A_0011_1.LEFT_CC.jpg")

    assert full_shape == (2670, 1275)
    assert max(work.shape) == 512
    assert work.shape[1] == pytest.approx(512 * 1275 / 2670, abs=1)


def test_white_paint_detected_with_full_resolution_box() -> None:
    result = _detect(MAMMO / "Normal/0003/A_0003_1.LEFT_CC.jpg")

    assert result.marked
    assert result.score > 0.9
    # The paint covers the top-left corner of the film, about 700 px across.
    x, y, width, height = result.boxes[0]
    assert x < 40
    assert y < 40
    assert 600 < width < 800
    assert 600 < height < 800


@pytest.mark.parametrize(
    "relative_path",
    [
        "Normal/0002/A_0002_1.LEFT_CC.jpg",  # punch holes, half-size film
        "Normal/0002/A_0002_1.LEFT_MLO.jpg",  # punch holes
        "Normal/0003/A_0003_1.LEFT_MLO.jpg",  # punch hole
        "Normal/0006/A_0006_1.RIGHT_MLO.jpg",  # white film-border strip along the top
        "Normal/0009/A_0009_1.RIGHT_MLO.jpg",  # grey label plate, border strip
        "Normal/0011/A_0011_1.LEFT_MLO.jpg",  # label plates, border strip
        "Normal/0005/A_0005_1.RIGHT_CC.jpg",  # dense breast
        "Cancer/0005/C_0005_1.RIGHT_MLO.jpg",  # bright dense mass
        "Cancer/0001/C_0001_1.RIGHT_MLO.jpg",  # thin film-edge line
    ],
)
def test_look_alikes_in_mini_ddsm_are_not_marked(relative_path: str) -> None:
    result = _detect(MAMMO / relative_path)

    assert not result.marked
    assert result.score < 0.1


@pytest.mark.parametrize("name", ["mdb003.pgm", "mdb171.pgm", "mdb210.pgm", "mdb268.pgm", "mdb273.pgm"])
def test_mias_stickers_and_dense_tissue_are_not_marked(name: str) -> None:
    result = _detect(MIAS / name)

    assert not result.marked
    assert result.score < 0.1


def test_mias_tape_band_is_marked() -> None:
    result = _detect(MIAS / "mdb274.pgm")

    assert result.marked
    # The band runs down the right edge of the 1024 x 1024 film.
    x, y, width, height = result.boxes[0]
    assert x > 800
    assert height > 900


def test_paint_out_removes_real_paint() -> None:
    path = MAMMO / "Normal/0009/A_0009_1.RIGHT_CC.jpg"
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    result = detect_markings(image)

    cleaned = paint_out(image, result.boxes)

    for x, y, width, height in result.boxes:
        assert (cleaned[y : y + height, x : x + width] >= 245).mean() < 0.001
    assert not detect_markings(cleaned).marked
    # The breast, far from the paint, is untouched.
    assert np.array_equal(cleaned[1800:2400, 0:400], image[1800:2400, 0:400])


@pytest.mark.parametrize(
    ("relative_path", "side", "view"),
    [
        ("Normal/0003/A_0003_1.RIGHT_CC.jpg", "RIGHT", "CC"),
        ("Normal/0011/A_0011_1.LEFT_MLO.jpg", "LEFT", "MLO"),
        ("Benign/0029/C_0029_1.LEFT_CC.jpg", "LEFT", "CC"),
        ("Cancer/0004/C_0004_1.RIGHT_MLO.jpg", "RIGHT", "MLO"),
    ],
)
def test_geometry_agrees_on_mini_ddsm(relative_path: str, side: str, view: str) -> None:
    path = MAMMO / relative_path
    work, _ = load_for_detection(path)

    result = check_geometry(work, side, view, "mini-ddsm", ddsm_scanner(path.name))

    assert result.side_agrees is True
    assert result.view_guess == view


def test_geometry_digitizers_face_opposite_ways() -> None:
    # Letter A (DBA) films put a LEFT breast's chest wall on the right, letter C
    # (Lumisys) films on the left.
    dba, _ = load_for_detection(MAMMO / "Normal/0011/A_0011_1.LEFT_CC.jpg")
    lumisys, _ = load_for_detection(MAMMO / "Benign/0029/C_0029_1.LEFT_CC.jpg")

    assert check_geometry(dba, "LEFT", "CC", "mini-ddsm").chest_wall == "right"
    assert check_geometry(lumisys, "LEFT", "CC", "mini-ddsm").chest_wall == "left"


def test_mammo_manifest_precision_and_recall() -> None:
    report = evaluate_manifest(MAMMO / "manifest.csv", processes=2)

    assert report["images"] == 92
    assert report["precision"] >= 0.95
    assert report["recall"] >= 0.95
    assert report["tp"] + report["fn"] == 10
    assert report["geometry"]["side_checked"] == 92


def test_mias_manifest_has_no_false_positive() -> None:
    report = evaluate_manifest(MIAS / "manifest.csv", processes=1)

    assert report["images"] == 40
    assert report["fp"] == 0
    assert report["tp"] == 1
    assert [entry["path"] for entry in report["misclassified"]] == []
