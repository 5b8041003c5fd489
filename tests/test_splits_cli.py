"""The ``curator split`` and ``curator export`` commands, run through Typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from curator.cli import app
from curator.db import Catalog
from curator.models import Split, SplitExclusion
from curator.settings import Settings
from test_splits_support import add_image, add_patients, link, sides_of

runner = CliRunner()


def _invoke(settings: Settings, *arguments: str):
    return runner.invoke(app, ["--db", settings.database_url, "--home", str(settings.home), *arguments])


def _catalog_with_leak(catalog: Catalog, settings: Settings | None = None) -> None:
    with catalog.transaction() as session:
        add_patients(session, "normal", 6, settings=settings)
        add_patients(session, "cancer", 6, settings=settings)


def test_create_prints_counts_and_stores_split(catalog: Catalog, settings: Settings) -> None:
    _catalog_with_leak(catalog)
    result = _invoke(settings, "split", "create", "first", "--query", "normal cancer", "--test-fraction", "0.34", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert "created split 'first' with 48 images" in result.output
    with catalog.session() as session:
        split = session.scalars(select(Split).where(Split.name == "first")).one()
    sides = sides_of(catalog, split.id)
    # round(6 * 0.34) = 2 patients of 4 images per label.
    assert sum(side == "test" for side in sides.values()) == 16


def test_query_words_can_be_repeated_or_quoted(catalog: Catalog, settings: Settings) -> None:
    _catalog_with_leak(catalog)
    quoted = _invoke(settings, "split", "create", "a", "--query", "normal cancer", "--test-fraction", "0.34", "--seed", "4", "--json")
    repeated = _invoke(settings, "split", "create", "b", "--query", "normal", "--query", "cancer", "--test-fraction", "0.34", "--seed", "4", "--json")
    assert json.loads(quoted.output)["query"] == json.loads(repeated.output)["query"] == "cancer normal"
    assert json.loads(quoted.output)["counts"] == json.loads(repeated.output)["counts"]


def test_add_synthetic_reports_exclusions(catalog: Catalog, settings: Settings) -> None:
    _catalog_with_leak(catalog)
    probe = _invoke(settings, "split", "create", "probe", "--query", "normal cancer", "--test-fraction", "0.34", "--seed", "4")
    assert probe.exit_code == 0, probe.output
    with catalog.session() as session:
        probe_id = session.scalars(select(Split.id).where(Split.name == "probe")).one()
    sides = sides_of(catalog, probe_id)
    test_ids = sorted(image_id for image_id, side in sides.items() if side == "test")
    train_ids = sorted(image_id for image_id, side in sides.items() if side == "train")
    with catalog.transaction() as session:
        leaking = [add_image(session, "cancer", origin="synthetic", method="interpolation") for _ in range(3)]
        for image_id, parent in zip(leaking, test_ids):
            link(session, image_id, parent)
        clean = [add_image(session, "cancer", origin="synthetic", method="interpolation") for _ in range(4)]
        for image_id, parent in zip(clean, train_ids):
            link(session, image_id, parent)

    result = _invoke(settings, "split", "create", "aug", "--query", "normal cancer", "--test-fraction", "0.34", "--seed", "4",
                     "--add-synthetic", "synthetic interpolated", "--count", "2")
    assert result.exit_code == 0, result.output
    assert "synthetic: 4 eligible, 2 added to train, 3 excluded" in result.output
    assert f"excluded 3: ancestor on the test side (ids {', '.join(map(str, leaking))})" in result.output
    with catalog.session() as session:
        recorded = session.scalars(select(SplitExclusion.image_id).join(Split, Split.id == SplitExclusion.split_id).where(Split.name == "aug")).all()
    assert sorted(recorded) == leaking


def test_dry_run_writes_nothing(catalog: Catalog, settings: Settings) -> None:
    _catalog_with_leak(catalog)
    result = _invoke(settings, "split", "create", "dry", "--query", "normal cancer", "--test-fraction", "0.34", "--seed", "4", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "nothing was written" in result.output
    listed = _invoke(settings, "split", "list", "--json")
    assert json.loads(listed.output) == []


def test_too_few_patients_is_one_line_error(catalog: Catalog, settings: Settings) -> None:
    _catalog_with_leak(catalog)
    result = _invoke(settings, "split", "create", "x", "--query", "normal cancer", "--test-fraction", "0.05", "--seed", "1")
    assert result.exit_code == 1
    assert "class 'cancer' has 6 patients" in result.output
    assert "Traceback" not in result.output


def test_count_without_synthetic_query_is_rejected(catalog: Catalog, settings: Settings) -> None:
    result = _invoke(settings, "split", "create", "x", "--query", "normal", "--test-fraction", "0.3", "--seed", "1", "--count", "3")
    assert result.exit_code == 1
    assert "--count needs --add-synthetic" in result.output


def test_show_and_delete(catalog: Catalog, settings: Settings) -> None:
    _catalog_with_leak(catalog)
    _invoke(settings, "split", "create", "s", "--query", "normal cancer", "--test-fraction", "0.34", "--val-fraction", "0.25", "--seed", "4")
    shown = _invoke(settings, "split", "show", "s", "--json")
    summary = json.loads(shown.output)
    assert summary["sides"]["test"]["label"] == {"cancer": 8, "normal": 8}
    assert summary["sides"]["val"]["patients"] == 2
    text = _invoke(settings, "split", "show", "s")
    assert "test 16 images, 4 patients" in text.output

    with catalog.transaction() as session:
        session.scalars(select(Split).where(Split.name == "s")).one().locked = True
    refused = _invoke(settings, "split", "delete", "s")
    assert refused.exit_code == 1
    assert "locked" in refused.output

    _invoke(settings, "split", "create", "t", "--query", "normal cancer", "--test-fraction", "0.34", "--seed", "4")
    deleted = _invoke(settings, "split", "delete", "t")
    assert deleted.exit_code == 0
    assert [row["name"] for row in json.loads(_invoke(settings, "split", "list", "--json").output)] == ["s"]


def test_export_command_writes_keras_tree(sqlite_catalog: Catalog, sqlite_settings: Settings, tmp_path: Path) -> None:
    _catalog_with_leak(sqlite_catalog, sqlite_settings)
    _invoke(sqlite_settings, "split", "create", "s", "--query", "normal cancer", "--test-fraction", "0.34", "--seed", "4")
    target = tmp_path / "export"
    result = _invoke(sqlite_settings, "export", "s", str(target))
    assert result.exit_code == 0, result.output
    assert "exported 48 images (train 32, test 16) as keras" in result.output
    assert len(list((target / "test" / "cancer").glob("*.png"))) == 8

    again = _invoke(sqlite_settings, "export", "s", str(target), "--format", "npz")
    assert again.exit_code == 1
    assert "not empty" in again.output
    replaced = _invoke(sqlite_settings, "export", "s", str(target), "--format", "npz", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert sorted(path.name for path in target.iterdir()) == [".curator-export", "arrays.npz"]
