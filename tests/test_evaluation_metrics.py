"""Tests of evaluation.metrics against scikit-learn and scipy on fixed predictions."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score, roc_auc_score

from evaluation.metrics import binary_metrics, mean_interval, roc_auc

# (labels, scores, threshold): balanced, tied scores, imbalanced, and scores
# exactly on the threshold.
CASES = {
    "balanced": (
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.6],
        0.5,
    ),
    "ties": (
        [0, 1, 0, 1, 1, 0, 0, 1, 1, 0],
        [0.5, 0.5, 0.2, 0.2, 0.9, 0.9, 0.5, 0.7, 0.5, 0.1],
        0.5,
    ),
    "imbalanced": (
        [0] * 17 + [1] * 3,
        [0.05, 0.1, 0.2, 0.15, 0.3, 0.6, 0.25, 0.12, 0.33, 0.41,
         0.07, 0.55, 0.22, 0.18, 0.09, 0.48, 0.3, 0.45, 0.8, 0.3],
        0.5,
    ),
    "low_threshold": (
        [1, 1, 0, 0, 1, 0, 1, 0, 0],
        [0.3, 0.25, 0.3, 0.1, 0.05, 0.29, 0.9, 0.3, 0.2],
        0.3,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_binary_metrics_match_sklearn(case: str) -> None:
    labels, scores, threshold = CASES[case]
    predicted = (np.asarray(scores) >= threshold).astype(int)

    result = binary_metrics(labels, scores, threshold)

    assert result["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["sensitivity"] == pytest.approx(recall_score(labels, predicted, pos_label=1))
    assert result["specificity"] == pytest.approx(recall_score(labels, predicted, pos_label=0))
    assert result["confusion_matrix"] == confusion_matrix(labels, predicted, labels=[0, 1]).tolist()
    assert result["n"] == len(labels)


def test_roc_auc_counts_tied_pair_as_half() -> None:
    # One positive and one negative with the same score: half a correct ordering.
    assert roc_auc([0, 1], [0.4, 0.4]) == pytest.approx(0.5)
    assert roc_auc([0, 0, 1], [0.4, 0.2, 0.4]) == pytest.approx(0.75)


def test_roc_auc_perfect_and_reversed() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_binary_metrics_single_class_gives_nan() -> None:
    result = binary_metrics([1, 1, 1], [0.9, 0.2, 0.6])

    assert math.isnan(result["roc_auc"])
    assert math.isnan(result["specificity"])
    assert result["sensitivity"] == pytest.approx(2 / 3)
    assert result["confusion_matrix"] == [[0, 0], [1, 2]]


def test_binary_metrics_accepts_boolean_labels() -> None:
    result = binary_metrics(np.array([False, True, True]), np.array([0.2, 0.7, 0.4]))

    assert result["confusion_matrix"] == [[1, 0], [1, 1]]


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], "0 or 1"),
        ([0, 1], [0.1], "2 labels but 1 scores"),
        ([], [], "zero predictions"),
        ([0, 1], [0.1, float("nan")], "NaN"),
    ],
)
def test_binary_metrics_rejects_invalid_input(labels: list, scores: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        binary_metrics(labels, scores)


@pytest.mark.parametrize(
    ("values", "confidence"),
    [
        ([0.71, 0.74, 0.69, 0.77, 0.72], 0.95),
        ([0.8, 0.9], 0.95),
        ([0.61, 0.66, 0.64, 0.70], 0.90),
    ],
)
def test_mean_interval_matches_scipy_t_interval(values: list[float], confidence: float) -> None:
    expected_low, expected_high = stats.t.interval(
        confidence, df=len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
    )

    result = mean_interval(values, confidence)

    assert result["mean"] == pytest.approx(np.mean(values))
    assert result["low"] == pytest.approx(expected_low)
    assert result["high"] == pytest.approx(expected_high)
    assert result["std"] == pytest.approx(np.std(values, ddof=1))
    assert result["n"] == len(values)
    assert result["confidence"] == confidence


def test_mean_interval_single_value_has_nan_bounds() -> None:
    result = mean_interval([0.8])

    assert result["mean"] == 0.8
    assert result["n"] == 1
    assert math.isnan(result["low"])
    assert math.isnan(result["high"])
    assert math.isnan(result["std"])


def test_mean_interval_skips_nan_values() -> None:
    result = mean_interval([0.7, float("nan"), 0.9])

    assert result["n"] == 2
    assert result["mean"] == pytest.approx(0.8)


def test_mean_interval_empty_is_all_nan() -> None:
    result = mean_interval([])

    assert result["n"] == 0
    assert math.isnan(result["mean"])


def test_mean_interval_rejects_confidence_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="confidence"):
        mean_interval([0.5, 0.6], confidence=95)


def test_cheap_modules_import_without_tensorflow() -> None:
    code = (
        "import sys\n"
        "import evaluation.metrics, evaluation.report, evaluation.classifier\n"
        "import evaluation.runs, evaluation.realism, evaluation.memorisation\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    repository_root = Path(__file__).resolve().parents[1]
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repository_root
    ).stdout

    assert output.strip() == "False False"
