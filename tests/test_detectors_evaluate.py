"""Manifest evaluation on synthetic films written to disk: counts, errors and geometry records."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import pytest

from curator.detectors.evaluate import confusion, dataset_from_row, evaluate_manifest
from curator.detectors.synthetic import add_half_disc, add_paint, synthetic_film

FIELDS = ["path", "label", "view", "side", "source", "has_white_marking"]


def _write_manifest(folder: Path, rows: list[dict[str, str]]) -> Path:
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    film = synthetic_film(height=1200, width=600, chest_wall="left")
    films = {
        "painted.png": (add_paint(film, (430, 60, 130, 180)), "yes"),
        "clean.png": (film, "no"),
        "punched.png": (add_half_disc(film, 300, 30), "no"),
        # Labelled marked, but its paint sits inside the breast: a false negative.
        "inside.png": (add_paint(film, (100, 500, 120, 160)), "yes"),
    }
    rows = []
    for name, (image, marked) in films.items():
        cv2.imwrite(str(tmp_path / name), image)
        rows.append(
            {"path": name, "label": "normal", "view": "CC", "side": "LEFT", "source": "mini-MIAS test", "has_white_marking": marked}
        )
    return _write_manifest(tmp_path, rows)


def test_counts_and_misclassified(manifest: Path) -> None:
    report = evaluate_manifest(manifest, processes=1)

    assert report["images"] == 4
    assert (report["tp"], report["fp"], report["fn"], report["tn"]) == (1, 0, 1, 2)
    assert report["precision"] == 1.0
    assert report["recall"] == 0.5
    assert [entry["path"] for entry in report["misclassified"]] == ["inside.png"]
    assert report["misclassified"][0]["expected"] is True


def test_geometry_records(manifest: Path) -> None:
    report = evaluate_manifest(manifest, processes=1)

    # The source names MIAS, where a LEFT breast faces left: every film agrees.
    assert report["geometry"]["side_checked"] == 4
    assert report["geometry"]["side_disagreements"] == []
    assert all(record["chest_wall"] == "left" for record in report["results"])


def test_two_processes_give_same_scores(manifest: Path) -> None:
    serial = evaluate_manifest(manifest, processes=1)
    parallel = evaluate_manifest(manifest, processes=2)

    assert [record["score"] for record in parallel["results"]] == [record["score"] for record in serial["results"]]
    assert [record["path"] for record in parallel["results"]] == [record["path"] for record in serial["results"]]


def test_boxes_in_full_resolution(manifest: Path) -> None:
    report = evaluate_manifest(manifest, processes=1)
    painted = next(record for record in report["results"] if record["path"] == "painted.png")

    x, y, width, height = painted["boxes"][0]
    assert abs(x - 430) <= 4
    assert abs(height - 180) <= 5


def test_missing_column_is_rejected(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\nfilm.png,normal\n")

    with pytest.raises(ValueError, match="has_white_marking"):
        evaluate_manifest(manifest, processes=1)


def test_confusion_with_no_positives() -> None:
    counts = confusion([False, False], [False, False])

    assert counts["tn"] == 2
    assert counts["precision"] is None
    assert counts["recall"] is None


def test_dataset_from_row() -> None:
    assert dataset_from_row({"path": "mdb001.pgm", "source": ""}) == "mias"
    assert dataset_from_row({"path": "A_0001_1.LEFT_CC.jpg", "source": "mini-DDSM via someone"}) == "mini-ddsm"
