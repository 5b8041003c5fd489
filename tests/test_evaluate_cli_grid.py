"""``curator experiment grid``: one split per cell on a shared test side, unfillable cells reported,
tables and chart written. The classifier is the brightness threshold of the records tests."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from curator.cli import app
from curator.db import Catalog
from curator.models import Evaluation, Image, Split
from curator.settings import Settings
from curator.splits import SplitSpec, preview_split
from test_evaluate_cli_records import fake_classifier  # noqa: F401 - fixture used by name
from test_splits_support import add_generator, add_image, add_patients, sides_of

runner = CliRunner()
GRID = ["--query", "normal cancer", "--test-fraction", "0.25", "--val-fraction", "0.25", "--split-seed", "0",
        "--seeds", "2", "--weights", "none", "--epochs", "1", "--image-size", "32"]


def _invoke(settings: Settings, *arguments: str):
    return runner.invoke(app, ["--db", settings.database_url, "--home", str(settings.home), *arguments])


def _catalog(catalog: Catalog, settings: Settings) -> dict[str, int]:
    """8 patients per class; 5 clean samples per class and 3 cancer samples of a generator that saw a test image."""
    with catalog.transaction() as session:
        add_patients(session, "normal", 8, settings=settings, brightness=60)
        add_patients(session, "cancer", 8, settings=settings, brightness=190)
    plan = preview_split(catalog, SplitSpec("probe", "normal cancer", test_fraction=0.25, val_fraction=0.25, seed=0))
    with catalog.transaction() as session:
        label_of = dict(session.execute(select(Image.id, Image.label)).all())
        train = {label: [i for i, side in plan.members.items() if side == "train" and label_of[i] == label] for label in ("normal", "cancer")}
        test_cancer = [i for i, side in plan.members.items() if side == "test" and label_of[i] == "cancer"]
        generators = {
            "normal": add_generator(session, "glow-normal", train=train["normal"]),
            "cancer": add_generator(session, "glow-cancer", train=train["cancer"]),
            "leaky": add_generator(session, "glow-leaky", train=train["cancer"][:4] + test_cancer[:1]),
        }
        for label, brightness in (("normal", 60), ("cancer", 190)):
            for _ in range(5):
                add_image(session, label, origin="synthetic", method="sample", generator_id=generators[label], settings=settings, brightness=brightness)
        for _ in range(3):
            add_image(session, "cancer", origin="synthetic", method="sample", generator_id=generators["leaky"], settings=settings, brightness=190)
    return generators


def test_grid_records_and_reports_unfilled(catalog: Catalog, settings: Settings, fake_classifier, tmp_path: Path) -> None:  # noqa: F811
    _catalog(catalog, settings)
    out = tmp_path / "grid"
    result = _invoke(settings, "experiment", "grid", "--name", "study", *GRID, "--real", "4,8", "--synthetic", "0,4,6", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "cell real 4 + synthetic 6: not filled;" in result.output

    with open(out / "grid.csv", newline="") as handle:
        rows = {(int(row["real"]), int(row["synthetic"])): row for row in csv.DictReader(handle)}
    assert sorted(rows) == [(4, 0), (4, 4), (4, 6), (8, 0), (8, 4), (8, 6)]
    assert rows[(4, 6)]["status"] == "not filled"
    assert "eligible: cancer 5, normal 5" in rows[(4, 6)]["reason"]
    assert rows[(8, 4)]["status"] == "done"
    assert float(rows[(8, 4)]["accuracy_mean"]) == 1.0
    assert rows[(8, 4)]["runs"] == "2"
    markdown = (out / "grid.md").read_text()
    assert "| 8 | 4 | sample | 2 | 100.00 ± 0.00 |" in markdown
    assert "- real 8 + synthetic 6: not filled;" in markdown
    assert (out / "grid.png").stat().st_size > 5000

    with catalog.session() as session:
        evaluations = session.scalars(select(Evaluation).where(Evaluation.experiment == "study")).all()
        splits = {split.name: split.id for split in session.scalars(select(Split).where(Split.name.like("study-%")))}
        labels = dict(session.execute(select(Image.id, Image.label)).all())
        origins = dict(session.execute(select(Image.id, Image.origin)).all())
    assert len(evaluations) == 4
    assert {evaluation.status for evaluation in evaluations} == {"done"}
    assert sorted(splits) == ["study-r4-s0", "study-r4-s4", "study-r8-s0", "study-r8-s4"]

    sides = {name: sides_of(catalog, split_id) for name, split_id in splits.items()}
    tests = [{i for i, side in members.items() if side == "test"} for members in sides.values()]
    assert all(test == tests[0] for test in tests)
    train = [i for i, side in sides["study-r4-s4"].items() if side == "train"]
    assert sorted((labels[i], origins[i]) for i in train) == sorted(
        [("cancer", "original")] * 4 + [("cancer", "synthetic")] * 4 + [("normal", "original")] * 4 + [("normal", "synthetic")] * 4
    )
    # The real draws are nested: the 4-image sets are part of the 8-image sets.
    small = {i for i, side in sides["study-r4-s0"].items() if side == "train"}
    large = {i for i, side in sides["study-r8-s0"].items() if side == "train"}
    assert small < large


def test_grid_name_cannot_be_reused(catalog: Catalog, settings: Settings, fake_classifier, tmp_path: Path) -> None:  # noqa: F811
    _catalog(catalog, settings)
    first = _invoke(settings, "experiment", "grid", "--name", "again", *GRID, "--real", "4", "--synthetic", "0", "--out", str(tmp_path / "a"))
    assert first.exit_code == 0, first.output
    second = _invoke(settings, "experiment", "grid", "--name", "again", *GRID, "--real", "4", "--synthetic", "0", "--out", str(tmp_path / "b"))
    assert second.exit_code == 1
    assert "experiment 'again' already has evaluations" in second.output


def test_grid_model_filter_missing_class(catalog: Catalog, settings: Settings, fake_classifier, tmp_path: Path) -> None:  # noqa: F811
    _catalog(catalog, settings)
    single = _invoke(settings, "experiment", "grid", "--name", "one", *GRID, "--real", "4", "--synthetic", "2", "--model", "glow-cancer",
                     "--out", str(tmp_path / "one"))
    assert single.exit_code == 0, single.output
    assert "eligible: normal 0" in single.output
    both = _invoke(settings, "experiment", "grid", "--name", "two", *GRID, "--real", "4", "--synthetic", "2", "--model", "glow-cancer",
                   "--model", "glow-normal", "--out", str(tmp_path / "two"))
    assert both.exit_code == 0, both.output
    with open(tmp_path / "two" / "grid.csv", newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["status"] == "done"


def test_grid_rejects_bad_sizes(catalog: Catalog, settings: Settings) -> None:
    result = _invoke(settings, "experiment", "grid", "--name", "bad", *GRID, "--real", "4,x")
    assert result.exit_code == 1
    assert "invalid --real '4,x'" in result.output


def test_grid_resume_keeps_finished_cells(catalog: Catalog, settings: Settings, monkeypatch, tmp_path: Path) -> None:
    from test_evaluate_cli_records import brightness_classifier

    _catalog(catalog, settings)
    calls = {"count": 0}

    def interrupted_second_cell(data, config, seeds, **callbacks):
        calls["count"] += 1
        if calls["count"] == 2:
            raise KeyboardInterrupt
        return brightness_classifier(data, config, seeds, **callbacks)

    monkeypatch.setattr("evaluation.runs.evaluate_seeds", interrupted_second_cell)
    monkeypatch.setattr("evaluation.classifier.package_versions", lambda: {})
    arguments = ["experiment", "grid", "--name", "long", *GRID, "--real", "4,8", "--synthetic", "0", "--out", str(tmp_path / "long")]
    first = _invoke(settings, *arguments)
    assert first.exit_code == 130
    with catalog.session() as session:
        statuses = [(row.split_id, row.status) for row in session.scalars(select(Evaluation).order_by(Evaluation.id))]
    assert [status for _, status in statuses] == ["done", "cancelled"]

    again = _invoke(settings, *arguments)
    assert again.exit_code == 1
    assert "pass --resume" in again.output
    other = _invoke(settings, *arguments, "--resume", "--epochs", "2")
    assert other.exit_code == 1
    assert "used other classifier settings" in other.output

    resumed = _invoke(settings, *arguments, "--resume")
    assert resumed.exit_code == 0, resumed.output
    with catalog.session() as session:
        rows = list(session.scalars(select(Evaluation).order_by(Evaluation.id)))
    assert [row.status for row in rows] == ["done", "cancelled", "done"]
    # The interrupted cell is evaluated again on its own split; the finished one is not rerun.
    assert rows[2].split_id == rows[1].split_id
    assert calls["count"] == 3
    with open(tmp_path / "long" / "grid.csv", newline="") as handle:
        table = {(int(row["real"]), int(row["synthetic"])): row for row in csv.DictReader(handle)}
    assert table[(4, 0)]["evaluation_id"] == str(rows[0].id)
    assert table[(8, 0)]["evaluation_id"] == str(rows[2].id)
