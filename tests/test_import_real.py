"""Importers on the real mini-DDSM and MIAS samples: counts and fields against the manifests."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from curator.db import Catalog
from curator.importing import run_import
from curator.models import Image
from curator.settings import Settings
from curator.sources import discover_mias, discover_mini_ddsm


def _manifest(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "manifest.csv", newline="") as handle:
        return {str((folder / row["path"]).resolve()): row for row in csv.DictReader(handle)}


def _key(image: Image) -> str:
    """The manifest key of a catalogued file: its path with links resolved."""
    return str(Path(image.file_path).resolve())


def _rows(catalog: Catalog) -> list[Image]:
    with catalog.session() as session:
        return list(session.scalars(select(Image).order_by(Image.id)))


def test_mini_ddsm_import_matches_manifest(catalog: Catalog, settings: Settings, mammo_sample: Path):
    report = run_import(catalog, settings, discover_mini_ddsm(mammo_sample), workers=2)
    expected = _manifest(mammo_sample)

    assert report.imported == 92
    assert report.failed == 0
    assert report.skipped["lesion mask"] == 39
    assert report.skipped["ics header"] == 13
    assert report.skipped["overlay"] == 28
    assert report.skipped["tape image"] == 3
    rows = _rows(catalog)
    assert len(rows) == 92
    for image in rows:
        row = expected[_key(image)]
        assert (image.label, image.view, image.side) == (row["label"], row["view"], row["side"])
        assert image.origin == "original"
        assert (settings.home / image.work_path).exists()
    assert len({image.patient_key for image in rows}) == 23
    assert Counter(image.label for image in rows) == {"benign": 40, "cancer": 28, "normal": 24}


def test_case_number_per_label_folder(sqlite_catalog, sqlite_settings, mammo_sample):
    run_import(sqlite_catalog, sqlite_settings, discover_mini_ddsm(mammo_sample), workers=1)
    rows = _rows(sqlite_catalog)
    normal = {image.patient_key for image in rows if "/Normal/0002/" in image.file_path}
    cancer = {image.patient_key for image in rows if "/Cancer/0002/" in image.file_path}
    assert len(normal) == 1
    assert len(cancer) == 1
    assert normal != cancer


def test_reimport_adds_no_duplicate_rows(sqlite_catalog, sqlite_settings, mammo_sample):
    run_import(sqlite_catalog, sqlite_settings, discover_mini_ddsm(mammo_sample), workers=2)
    second = run_import(sqlite_catalog, sqlite_settings, discover_mini_ddsm(mammo_sample), workers=2)
    assert second.imported == 0
    assert second.already_present == 92
    with sqlite_catalog.session() as session:
        assert session.scalar(select(func.count(Image.id))) == 92


@pytest.mark.parametrize("sheet", ["Data-MoreThanTwoMasks.csv", "Data-MoreThanTwoMasks.xlsx"])
def test_sheet_values_win_over_names(sqlite_catalog, sqlite_settings, mammo_sample, metadata_dir, sheet):
    report = run_import(sqlite_catalog, sqlite_settings, discover_mini_ddsm(mammo_sample, metadata_dir / sheet), workers=1)
    assert report.imported == 92
    # The 84-row sheet lists case Normal/0010, which the sample does not ship.
    assert report.failed == 4
    assert all("Normal\\0010" in line for line in report.failures)
    rows = _rows(sqlite_catalog)
    from_sheet = [image for image in rows if image.label_source == "metadata sheet"]
    # The other 80 rows cover 20 of the sample's 23 cases; the rest fall back to names.
    assert len(from_sheet) == 80
    assert all(image.extra.get("age") for image in from_sheet)
    assert {image.label_source for image in rows} == {"metadata sheet", "folder"}


def test_png_edition_sheet_matches_jpeg_files(metadata_dir, mammo_sample):
    discovery = discover_mini_ddsm(mammo_sample, metadata_dir / "Data.csv", ignore_missing=True)
    assert len(discovery.candidates) == 92
    assert discovery.skipped["listed in sheet, not in folder"] == 7808 - 92
    assert not discovery.failures
    density = {candidate.extra.get("density") for candidate in discovery.candidates}
    assert density <= {"0", "1", "2", "3", "4"}


def test_full_sheet_missing_files_are_reported_per_row(metadata_dir, mammo_sample):
    discovery = discover_mini_ddsm(mammo_sample, metadata_dir / "DataWMask.csv")
    assert len(discovery.failures) == 7808 - 92
    assert discovery.failures[0].startswith("DataWMask.csv row ")
    assert "file not found" in discovery.failures[0]


def test_mias_import_matches_manifest(catalog: Catalog, settings: Settings, mias_sample: Path):
    report = run_import(catalog, settings, discover_mias(mias_sample), workers=2)
    assert report.imported == 40
    assert report.failed == 0
    expected = _manifest(mias_sample)
    rows = _rows(catalog)
    for image in rows:
        row = expected[_key(image)]
        assert (image.label, image.view, image.side) == (row["label"], row["view"], row["side"])
    keys = {Path(image.file_path).stem: image.patient_key for image in rows}
    # mdb023 (right) and mdb024 (left) are the two breasts of one woman.
    assert keys["mdb023"] == keys["mdb024"]
    assert keys["mdb003"] != keys["mdb018"]


def test_mias_image_with_several_lines_keeps_every_finding(mias_sample):
    discovery = discover_mias(mias_sample)
    by_name = {candidate.path.stem: candidate for candidate in discovery.candidates}
    assert by_name["mdb233"].label == "cancer"
    assert by_name["mdb003"].label == "normal"
    assert by_name["mdb274"].extra["findings"][0]["class"] == "MISC"
