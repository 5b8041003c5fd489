"""Detector commands on the catalog: detection runs, verdicts, paint-out lineage and the bias report."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from curator.bias import bias_report, rank_auc
from curator.catalog import find_images, set_verdicts
from curator.cleaning import clean_images
from curator.detection import detect_markings_in_catalog
from curator.importing import run_import
from curator.models import Detection, DetectionRun, Image, Lineage
from curator.query import parse
from curator.sources import discover_folder, discover_mini_ddsm


def _film_with_paint(paint: bool) -> np.ndarray:
    film = np.full((600, 360), 8, dtype=np.uint8)
    cv2.ellipse(film, (0, 300), (250, 230), 0, -90, 90, 150, -1)
    noise = np.random.default_rng(1 if paint else 2).integers(0, 25, film.shape, dtype=np.uint8)
    film = cv2.add(film, noise)
    if paint:
        film[30:130, 250:340] = 255
    return film


@pytest.fixture
def painted_catalog(tmp_path, catalog, settings):
    folder = tmp_path / "films" / "normal"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "painted.png"), _film_with_paint(True))
    cv2.imwrite(str(folder / "clean.png"), _film_with_paint(False))
    cancer = tmp_path / "films" / "cancer"
    cancer.mkdir()
    cv2.imwrite(str(cancer / "c.png"), cv2.flip(_film_with_paint(False), 1))
    run_import(catalog, settings, discover_folder(tmp_path / "films"), workers=1)
    return catalog


def _by_name(catalog) -> dict[str, Image]:
    return {Path(image.file_path).name: image for image in find_images(catalog, parse(""))}


def test_detection_flags_paint_and_records_box(painted_catalog):
    summary = detect_markings_in_catalog(painted_catalog, parse(""), workers=1)
    assert summary.examined == 3
    assert summary.flagged == 1
    images = _by_name(painted_catalog)
    assert images["painted.png"].marking_detected is True
    assert images["clean.png"].marking_detected is False
    with painted_catalog.session() as session:
        detection = session.scalars(select(Detection).where(Detection.image_id == images["painted.png"].id)).one()
    x, y, w, h = detection.boxes[0]
    assert abs(x - 250) <= 6
    assert abs(y - 30) <= 6
    assert abs(w - 90) <= 8
    assert abs(h - 100) <= 8


def test_detection_rerun_and_new_version(painted_catalog, monkeypatch):
    detect_markings_in_catalog(painted_catalog, parse(""), workers=1)
    again = detect_markings_in_catalog(painted_catalog, parse(""), workers=1)
    assert again.examined == 0
    assert again.already_done == 3
    with painted_catalog.session() as session:
        assert session.scalar(select(func.count(Detection.id))) == 3

    monkeypatch.setattr("curator.detectors.markings.DETECTOR_VERSION", "2-test")
    newer = detect_markings_in_catalog(painted_catalog, parse(""), workers=1)
    assert newer.examined == 3
    with painted_catalog.session() as session:
        assert session.scalar(select(func.count(DetectionRun.id))) == 2
        assert session.scalar(select(func.count(Detection.id))) == 6


def test_detector_never_overwrites_curator_verdict(painted_catalog):
    images = _by_name(painted_catalog)
    set_verdicts(painted_catalog, [images["painted.png"].id], False, curator="ana")
    detect_markings_in_catalog(painted_catalog, parse(""), workers=1)
    refreshed = _by_name(painted_catalog)
    assert refreshed["painted.png"].marking_verdict is False
    assert refreshed["painted.png"].marking_detected is True
    assert [image.id for image in find_images(painted_catalog, parse("marked"))] == []
    assert images["painted.png"].id in [image.id for image in find_images(painted_catalog, parse("disputed"))]


def test_clean_makes_derived_child_with_background_pixels(painted_catalog, settings):
    detect_markings_in_catalog(painted_catalog, parse(""), workers=1)
    summary = clean_images(painted_catalog, settings, parse("marked"))
    assert len(summary.created) == 1
    original = _by_name(painted_catalog)["painted.png"]
    with painted_catalog.session() as session:
        child = session.get(Image, summary.created[0])
        edge = session.scalars(select(Lineage).where(Lineage.child_id == child.id)).one()
    assert (child.origin, child.method) == ("derived", "cleaned")
    assert edge.parent_id == original.id
    assert child.patient_key == original.patient_key
    assert child.params["boxes"]
    assert child.params["box_source"] == "detector"
    cleaned = cv2.imread(child.file_path, cv2.IMREAD_GRAYSCALE)
    assert cleaned[30:130, 250:340].mean() < 30
    # Running it again finds the same pixels and adds nothing.
    again = clean_images(painted_catalog, settings, parse("marked"))
    assert again.created == []
    assert again.existing == summary.created


def test_curator_boxes_drive_paint_out(painted_catalog, settings):
    images = _by_name(painted_catalog)
    set_verdicts(painted_catalog, [images["painted.png"].id], True, boxes=[[245, 25, 100, 110]])
    summary = clean_images(painted_catalog, settings, parse("marked"))
    with painted_catalog.session() as session:
        child = session.get(Image, summary.created[0])
    assert child.params["box_source"] == "curator"
    assert child.params["boxes"] == [[245, 25, 100, 110]]


def test_bias_report_scores_shortcut(painted_catalog):
    detect_markings_in_catalog(painted_catalog, parse(""), workers=1)
    report = bias_report(painted_catalog, parse(""))
    assert report["crosstab"]["normal"] == {"marked": 1, "unmarked": 1}
    assert report["crosstab"]["cancer"] == {"unmarked": 1}
    shortcut = report["shortcut"]
    assert shortcut["positive_label"] == "normal"
    assert shortcut["accuracy"] == pytest.approx(2 / 3)
    assert shortcut["roc_auc_flag"] == pytest.approx(0.75)


def test_rank_auc_matches_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 1)
    assert rank_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_real_sample_bias_report_shows_marked_normals(sqlite_catalog, sqlite_settings, mammo_sample, tmp_path):
    run_import(sqlite_catalog, sqlite_settings, discover_mini_ddsm(mammo_sample), workers=2)
    runner = CliRunner()
    from curator.cli import app

    base = ["--db", sqlite_settings.database_url, "--home", str(sqlite_settings.home)]
    result = runner.invoke(app, base + ["detect", "markings"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, base + ["report", "bias", "--json", "--chart", str(tmp_path / "bias.png")])
    report = json.loads(result.output)
    assert report["crosstab"]["normal"]["marked"] == 10
    assert report["crosstab"]["normal"]["unmarked"] == 14
    assert report["crosstab"]["cancer"].get("marked", 0) == 0
    assert (tmp_path / "bias.png").stat().st_size > 10_000
    result = runner.invoke(app, base + ["clean", "normal", "marked", "--sheet", str(tmp_path / "sheet.png")])
    assert result.exit_code == 0, result.output
    assert "cleaned 10 images" in result.output
    assert (tmp_path / "sheet.png").exists()


def test_geometry_run_keeps_marking_boxes_for_clean(painted_catalog, settings):
    from curator.detection import check_geometry_in_catalog

    detect_markings_in_catalog(painted_catalog, parse(""), workers=1)
    check_geometry_in_catalog(painted_catalog, parse(""), workers=1)
    summary = clean_images(painted_catalog, settings, parse("marked"))
    assert len(summary.created) == 1
    assert summary.without_boxes == 0
