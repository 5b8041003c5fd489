"""The marking bias report: how strongly the white-marking flag alone predicts the label.

The report gives the shortcut as one number before anything is trained: the accuracy and ROC AUC
of the one-feature rule "marked means <label>", for the selected images (originals, derived and
synthetic alike), next to the crosstab of marking against label per view and side.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from curator.catalog import marking_state
from curator.db import Catalog
from curator.models import Image
from curator.query import Query


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return the ROC AUC of scores for binary labels (ties count one half); NaN with one class."""
    positives = scores[labels == 1]
    negatives = scores[labels == 0]
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([positives, negatives]), kind="mergesort")
    values = np.concatenate([positives, negatives])[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and values[stop + 1] == values[start]:
            stop += 1
        ranks[start : stop + 1] = (start + stop) / 2.0 + 1.0
        start = stop + 1
    positive_ranks = np.zeros(len(values))
    positive_ranks[order] = ranks
    rank_sum = positive_ranks[: len(positives)].sum()
    return float((rank_sum - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives)))


def bias_report(catalog: Catalog, query: Query, positive_label: str | None = None) -> dict[str, Any]:
    """Crosstab marking against label per view and side, and score the marking-only rule."""
    with catalog.session() as session:
        images = list(session.scalars(select(Image).where(query.where()).order_by(Image.id)))
    crosstab: dict[str, Counter] = defaultdict(Counter)
    per_group: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for image in images:
        state = marking_state(image)
        label = image.label or "unknown"
        crosstab[label][state] += 1
        group = f"{image.view or '?'}-{(image.side or '?').lower()}"
        per_group[group][label][state] += 1

    checked = [image for image in images if marking_state(image) != "unchecked" and image.label]
    labels_present = sorted({image.label for image in checked})
    if positive_label is None and labels_present:
        # The label the marking points at: the one with the highest marked share.
        def marked_share(label: str) -> float:
            counts = crosstab[label]
            total = counts["marked"] + counts["unmarked"]
            return counts["marked"] / total if total else 0.0

        positive_label = max(labels_present, key=marked_share)
    rule: dict[str, Any] = {"positive_label": positive_label, "images": len(checked)}
    if checked and positive_label is not None and len(labels_present) >= 2:
        truth = np.array([1 if image.label == positive_label else 0 for image in checked])
        flag = np.array([1.0 if marking_state(image) == "marked" else 0.0 for image in checked])
        scores = np.array([image.marking_score if image.marking_score is not None else flag[index] for index, image in enumerate(checked)])
        rule.update(
            accuracy=float((flag == truth).mean()),
            roc_auc_flag=rank_auc(truth, flag),
            roc_auc_score=rank_auc(truth, scores),
            sensitivity=float(flag[truth == 1].mean()) if (truth == 1).any() else float("nan"),
            specificity=float(1 - flag[truth == 0].mean()) if (truth == 0).any() else float("nan"),
        )
    else:
        rule["note"] = "needs at least two labels among images with a detection or a verdict"
    return {
        "query": str(query),
        "images": len(images),
        "unchecked": sum(1 for image in images if marking_state(image) == "unchecked"),
        "crosstab": {label: dict(counts) for label, counts in sorted(crosstab.items())},
        "by_view_side": {group: {label: dict(counts) for label, counts in sorted(labels.items())} for group, labels in sorted(per_group.items())},
        "shortcut": rule,
        "marked_ids": [image.id for image in images if marking_state(image) == "marked"],
    }


def plot_bias(report: dict[str, Any], path: Path) -> Path:
    """Write a bar chart of marked and unmarked counts per label and per view-side group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(report["by_view_side"])
    labels = sorted(report["crosstab"])
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, max(1, len(groups)) / 2]})
    states = ("marked", "unmarked", "unchecked")
    colours = {"marked": "#d62728", "unmarked": "#1f77b4", "unchecked": "#bbbbbb"}

    bottom = np.zeros(len(labels))
    for state in states:
        values = np.array([report["crosstab"][label].get(state, 0) for label in labels], dtype=float)
        axes[0].bar(labels, values, bottom=bottom, color=colours[state], label=state)
        bottom += values
    axes[0].set_title("marking by label")
    axes[0].set_ylabel("images")
    axes[0].set_ylim(0, max(1.0, float(bottom.max(initial=0))) * 1.3)
    axes[0].legend(loc="upper left", ncols=3, fontsize="small")

    width = 0.8 / max(1, len(labels))
    positions = np.arange(len(groups))
    for index, label in enumerate(labels):
        marked = np.array([report["by_view_side"][group].get(label, {}).get("marked", 0) for group in groups], dtype=float)
        totals = np.array([sum(report["by_view_side"][group].get(label, {}).values()) for group in groups], dtype=float)
        share = np.divide(marked, totals, out=np.zeros_like(marked), where=totals > 0)
        axes[1].bar(positions + index * width, share, width=width, label=label)
    axes[1].set_xticks(positions + width * (len(labels) - 1) / 2, groups)
    axes[1].set_ylim(0, 1)
    axes[1].set_ylabel("marked share")
    axes[1].set_title("marked share per view and side")
    axes[1].legend()

    shortcut = report["shortcut"]
    if "accuracy" in shortcut:
        figure.suptitle(
            f"'marked means {shortcut['positive_label']}': accuracy {shortcut['accuracy']:.2f}, "
            f"ROC AUC {shortcut['roc_auc_flag']:.2f} (flag), {shortcut['roc_auc_score']:.2f} (detector score)"
        )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
