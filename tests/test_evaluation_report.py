"""Tests of grid tables and plots built from stored evaluation summaries."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from evaluation.metrics import mean_interval
from evaluation.report import grid_table, plot_grid, plot_learning_curves


def cell(real: int, synthetic: int, method: str, accuracies: list[float], aucs: list[float]) -> dict:
    return {
        "real": real,
        "synthetic": synthetic,
        "method": method,
        "summary": {"accuracy": mean_interval(accuracies), "roc_auc": mean_interval(aucs)},
    }


GRID = [
    cell(100, 100, "sample", [0.75, 0.77, 0.76], [0.80, 0.82, 0.81]),
    cell(100, 0, "none", [0.72, 0.74, 0.73], [0.78, 0.79, 0.80]),
    cell(250, 0, "none", [0.77, 0.78], [0.83, 0.85]),
    cell(250, 250, "sample", [0.79], [0.86]),
    cell(100, 400, "sample", [0.77, 0.78, 0.775], [0.82, 0.83, 0.84]),
]


def test_grid_table_markdown_shows_mean_and_half_width() -> None:
    _, markdown = grid_table(GRID)

    lines = markdown.strip().splitlines()
    assert lines[0] == "| real | synthetic | method | runs | accuracy % | ROC AUC |"
    assert lines[1] == "|---:|---:|---|---:|---:|---:|"
    interval = mean_interval([0.72, 0.74, 0.73])
    half_width = 100 * (interval["high"] - interval["low"]) / 2
    assert lines[2] == f"| 100 | 0 | none | 3 | 73.00 ± {half_width:.2f} | 0.790 ± 0.025 |"
    # Rows follow real count, then synthetic count.
    assert [line.split(" | ")[:2] for line in lines[2:]] == [
        ["| 100", "0"], ["| 100", "100"], ["| 100", "400"], ["| 250", "0"], ["| 250", "250"]
    ]
    # One run has no interval, so only its mean is shown.
    assert lines[-1] == "| 250 | 250 | sample | 1 | 79.00 | 0.860 |"


def test_grid_table_csv_holds_raw_fractions() -> None:
    csv_text, _ = grid_table(GRID)

    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert list(rows[0]) == [
        "real", "synthetic", "method", "runs", "accuracy_mean", "accuracy_low", "accuracy_high",
        "roc_auc_mean", "roc_auc_low", "roc_auc_high",
    ]
    assert len(rows) == 5
    first = rows[0]
    assert (first["real"], first["synthetic"], first["method"], first["runs"]) == ("100", "0", "none", "3")
    assert float(first["accuracy_mean"]) == pytest.approx(0.73)
    assert float(first["accuracy_low"]) == pytest.approx(mean_interval([0.72, 0.74, 0.73])["low"])
    assert rows[-1]["accuracy_low"] == ""
    assert float(rows[-1]["roc_auc_mean"]) == pytest.approx(0.86)


def test_grid_table_shows_nan_metric_as_dash() -> None:
    single = {"real": 50, "synthetic": 0, "method": "none",
              "summary": {"accuracy": mean_interval([0.6, 0.62]), "roc_auc": mean_interval([math.nan])}}

    csv_text, markdown = grid_table([single])

    assert markdown.strip().splitlines()[-1].endswith("| — |")
    assert csv_text.strip().splitlines()[-1].endswith(",,,")


def test_grid_table_rejects_cell_without_summary() -> None:
    with pytest.raises(ValueError, match="missing summary"):
        grid_table([{"real": 1, "synthetic": 0, "method": "none"}])


def test_plot_grid_writes_png(tmp_path: Path) -> None:
    path = plot_grid(GRID, tmp_path / "plots" / "grid.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_plot_grid_rejects_empty_grid(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no grid cells"):
        plot_grid([], tmp_path / "grid.png")


def test_plot_learning_curves_writes_png(tmp_path: Path) -> None:
    runs = [
        {"seed": 1, "history": {"loss": [0.9, 0.7, 0.6, 0.5], "val_loss": [0.8, 0.75, 0.7, 0.72],
                                "phase": ["head", "head", "fine_tune", "fine_tune"]}},
        {"seed": 2, "history": {"loss": [0.95, 0.8, 0.65], "val_loss": [], "phase": ["full"] * 3}},
    ]

    path = plot_learning_curves(runs, tmp_path / "curves.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
