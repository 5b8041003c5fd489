"""Binary classification metrics and confidence intervals over repeated runs.

Only numpy and scipy are used here, so that reports and grids can be built
without importing TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def binary_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_score: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
) -> dict:
    """Compute accuracy, ROC AUC, sensitivity, specificity and the confusion matrix.

    Label 1 is the positive class (for example cancer, or synthetic in the
    realism check). A score at or above `threshold` predicts label 1.
    Metrics that are undefined on the given labels are NaN: roc_auc when only
    one class is present, sensitivity without positives, specificity without
    negatives. The confusion matrix is [[tn, fp], [fn, tp]] as plain ints.
    """
    labels = np.asarray(y_true)
    scores = np.asarray(y_score, dtype=np.float64)
    _check_binary_inputs(labels, scores)
    labels = labels.astype(np.int64)

    predicted = (scores >= threshold).astype(np.int64)
    tp = int(np.sum((predicted == 1) & (labels == 1)))
    tn = int(np.sum((predicted == 0) & (labels == 0)))
    fp = int(np.sum((predicted == 1) & (labels == 0)))
    fn = int(np.sum((predicted == 0) & (labels == 1)))
    positives = tp + fn
    negatives = tn + fp

    return {
        "accuracy": (tp + tn) / labels.size,
        "roc_auc": roc_auc(labels, scores),
        "sensitivity": tp / positives if positives else math.nan,
        "specificity": tn / negatives if negatives else math.nan,
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "n": int(labels.size),
        "threshold": float(threshold),
    }


def roc_auc(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray) -> float:
    """Compute the area under the ROC curve from score ranks (Mann-Whitney U).

    Tied scores get the average of the ranks they span, which counts a tied
    positive-negative pair as half a correct ordering. Returns NaN when only
    one class is present.
    """
    labels = np.asarray(y_true)
    scores = np.asarray(y_score, dtype=np.float64)
    _check_binary_inputs(labels, scores)

    positive = labels == 1
    n_positive = int(positive.sum())
    n_negative = labels.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return math.nan

    ranks = _average_ranks(scores)
    rank_sum = float(ranks[positive].sum())
    u_statistic = rank_sum - n_positive * (n_positive + 1) / 2.0
    return u_statistic / (n_positive * n_negative)


def mean_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> dict:
    """Compute the mean and its Student's t confidence interval.

    NaN values (for example an undefined ROC AUC) are left out, and `n`
    counts the values used. With a single value the spread is unknown, so
    `std`, `low` and `high` are NaN rather than an interval of zero width.
    With no usable value every field except `n` and `confidence` is NaN.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")

    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[~np.isnan(array)]
    n = int(finite.size)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "std": math.nan, "n": 0,
                "confidence": confidence}

    mean = float(finite.mean())
    if n == 1:
        return {"mean": mean, "low": math.nan, "high": math.nan, "std": math.nan, "n": 1,
                "confidence": confidence}

    std = float(finite.std(ddof=1))
    critical_value = float(stats.t.ppf((1.0 + confidence) / 2.0, df=n - 1))
    half_width = critical_value * std / math.sqrt(n)
    return {"mean": mean, "low": mean - half_width, "high": mean + half_width, "std": std, "n": n,
            "confidence": confidence}


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank scores from 1 upwards, giving tied scores the mean of their ranks."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)

    # A group of tied scores occupies ranks (end - count + 1) .. end.
    group_end = np.cumsum(counts).astype(np.float64)
    group_mean_rank = group_end - (counts - 1) / 2.0
    return group_mean_rank[inverse]


def _check_binary_inputs(labels: np.ndarray, scores: np.ndarray) -> None:
    """Raise ValueError unless labels are 0/1 and scores are finite and match them."""
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(
            f"labels and scores must be 1-D, got shapes {labels.shape} and {scores.shape}"
        )
    if labels.size != scores.size:
        raise ValueError(f"got {labels.size} labels but {scores.size} scores")
    if labels.size == 0:
        raise ValueError("cannot compute metrics on zero predictions")
    unexpected = set(np.unique(labels).tolist()) - {0, 1}
    if unexpected:
        raise ValueError(f"labels must be 0 or 1, found {sorted(unexpected)}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
