"""Tables and plots of evaluation results: augmentation grids and learning curves.

Only numpy and matplotlib (Agg canvas, no pyplot state) are used, so reports
can be rebuilt from stored metrics without TensorFlow.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Metrics a grid can show, in column order. A column appears when any cell has it.
GRID_METRICS = ("accuracy", "roc_auc", "sensitivity", "specificity")
# Metrics shown in percent in markdown. ROC AUC stays a fraction, as is usual.
PERCENT_METRICS = {"accuracy", "sensitivity", "specificity"}
METRIC_TITLES = {
    "accuracy": "accuracy %",
    "roc_auc": "ROC AUC",
    "sensitivity": "sensitivity %",
    "specificity": "specificity %",
}


def grid_table(cells: Sequence[Mapping]) -> tuple[str, str]:
    """Render grid cells as CSV text and as a markdown table.

    Each cell has `real` and `synthetic` image counts, a `method` name and a
    `summary` mapping metric names to `mean_interval` dicts (mean, low, high,
    n). The CSV contains raw fractions with empty fields for missing or NaN
    values. The markdown shows "mean ± half-width" (accuracy, sensitivity and
    specificity in percent), or the mean alone when one run gives no interval.
    Rows are sorted by real count, synthetic count and method.
    """
    rows = sorted((_check_cell(cell) for cell in cells), key=_cell_order)
    metrics = [name for name in GRID_METRICS if any(name in row["summary"] for row in rows)]

    csv_buffer = io.StringIO()
    writer = csv.writer(csv_buffer, lineterminator="\n")
    header = ["real", "synthetic", "method", "runs"]
    for name in metrics:
        header += [f"{name}_mean", f"{name}_low", f"{name}_high"]
    writer.writerow(header)
    for row in rows:
        values = [row["real"], row["synthetic"], row["method"], _run_count(row)]
        for name in metrics:
            interval = row["summary"].get(name, {})
            values += [_csv_number(interval.get(key)) for key in ("mean", "low", "high")]
        writer.writerow(values)

    titles = ["real", "synthetic", "method", "runs"] + [METRIC_TITLES[name] for name in metrics]
    lines = [
        "| " + " | ".join(titles) + " |",
        "|" + "|".join(["---:", "---:", "---", "---:"] + ["---:"] * len(metrics)) + "|",
    ]
    for row in rows:
        values = [str(row["real"]), str(row["synthetic"]), row["method"], str(_run_count(row))]
        values += [_markdown_interval(row["summary"].get(name), name) for name in metrics]
        lines.append("| " + " | ".join(values) + " |")
    return csv_buffer.getvalue(), "\n".join(lines) + "\n"


def plot_grid(cells: Sequence[Mapping], path: str | Path) -> Path:
    """Save a PNG of test accuracy against the number of synthetic images, one line per real-set size.

    Points are means and error bars the confidence interval of the runs. A
    cell with no synthetic images is the starting point of every method's
    line for its real-set size. Lines are split by method only when the cells
    use more than one.
    """
    rows = sorted((_check_cell(cell) for cell in cells), key=_cell_order)
    if not rows:
        raise ValueError("no grid cells to plot")
    methods = sorted({row["method"] for row in rows if row["synthetic"] > 0})

    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for real in sorted({row["real"] for row in rows}):
        same_real = [row for row in rows if row["real"] == real]
        baseline = [row for row in same_real if row["synthetic"] == 0]
        by_method: dict[str, list[dict]] = {}
        for row in same_real:
            if row["synthetic"] > 0:
                by_method.setdefault(row["method"], []).append(row)
        if not by_method:
            _plot_accuracy_line(axes, baseline, f"{real} real")
        for method, augmented in by_method.items():
            label = f"{real} real, {method}" if len(methods) > 1 else f"{real} real"
            _plot_accuracy_line(axes, baseline + augmented, label)

    confidence = _confidence_of(rows)
    interval_text = f"{confidence:.0%} interval" if confidence is not None else "interval"
    axes.set_xlabel("synthetic images added to the training set")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"Accuracy against synthetic images added (mean and {interval_text} over seeds)")
    axes.grid(True, alpha=0.3)
    axes.legend(title="training set", fontsize=8)

    return _save(figure, path)


def plot_learning_curves(histories: Sequence[Mapping] | Mapping[object, Mapping], path: str | Path) -> Path:
    """Save a PNG of training loss (solid) and validation loss (dashed) per epoch, one colour per run.

    `histories` is a list of history dicts, a mapping from a label (such as
    the seed) to a history, or the `runs` list of `evaluate_seeds`. A dotted
    vertical line marks the epoch where fine-tuning of the base began.
    """
    labelled = _label_histories(histories)
    if not labelled:
        raise ValueError("no histories to plot")

    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, (label, history) in enumerate(labelled):
        colour = f"C{index % 10}"
        loss = list(history.get("loss", []))
        val_loss = list(history.get("val_loss", []))
        axes.plot(range(1, len(loss) + 1), loss, color=colour, marker=".", label=f"{label} loss")
        if val_loss:
            axes.plot(range(1, len(val_loss) + 1), val_loss, color=colour, linestyle="--", marker=".",
                      label=f"{label} val_loss")
        phases = list(history.get("phase", []))
        if "fine_tune" in phases and phases.index("fine_tune") > 0:
            axes.axvline(phases.index("fine_tune") + 0.5, color=colour, linestyle=":", alpha=0.7,
                         label=f"{label} fine-tuning starts")

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("binary cross-entropy loss")
    axes.set_title("Training (solid) and validation (dashed) loss per epoch")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, ncol=2)
    return _save(figure, path)


def _plot_accuracy_line(axes: object, points: list[dict], label: str) -> None:
    """Draw one line of mean accuracy in percent with asymmetric error bars from low and high."""
    x_values, means, below, above = [], [], [], []
    for point in points:
        interval = point["summary"]["accuracy"]
        mean = float(interval["mean"])
        low, high = interval.get("low", math.nan), interval.get("high", math.nan)
        x_values.append(point["synthetic"])
        means.append(100.0 * mean)
        # A single run has no interval (NaN bounds), so it is drawn without a bar.
        below.append(0.0 if _is_missing(low) else 100.0 * (mean - float(low)))
        above.append(0.0 if _is_missing(high) else 100.0 * (float(high) - mean))
    axes.errorbar(x_values, means, yerr=[below, above], marker="o", capsize=3, label=label)


def _label_histories(histories: Sequence[Mapping] | Mapping[object, Mapping]) -> list[tuple[str, Mapping]]:
    """Pair each history with a legend label."""
    if isinstance(histories, Mapping):
        return [(str(label), history) for label, history in histories.items()]
    labelled = []
    for index, entry in enumerate(histories, start=1):
        if "history" in entry:
            label = f"seed {entry['seed']}" if "seed" in entry else f"run {index}"
            labelled.append((label, entry["history"]))
        else:
            labelled.append((f"run {index}", entry))
    return labelled


def _check_cell(cell: Mapping) -> dict:
    """Return the cell as a dict after checking it has the keys a grid needs."""
    missing = [key for key in ("real", "synthetic", "method", "summary") if key not in cell]
    if missing:
        raise ValueError(f"grid cell {dict(cell)!r} is missing {', '.join(missing)}")
    if "accuracy" not in cell["summary"]:
        raise ValueError(f"grid cell real={cell['real']} synthetic={cell['synthetic']} has no accuracy summary")
    return {
        "real": int(cell["real"]),
        "synthetic": int(cell["synthetic"]),
        "method": str(cell["method"]),
        "summary": cell["summary"],
    }


def _cell_order(row: dict) -> tuple[int, int, str]:
    return row["real"], row["synthetic"], row["method"]


def _run_count(row: dict) -> int:
    return int(row["summary"]["accuracy"].get("n", 0))


def _confidence_of(rows: list[dict]) -> float | None:
    """Return the confidence level the cells share, or None when it is not recorded or differs."""
    levels = {row["summary"]["accuracy"].get("confidence") for row in rows}
    if len(levels) == 1:
        (level,) = levels
        return None if level is None else float(level)
    return None


def _markdown_interval(interval: Mapping | None, metric: str) -> str:
    """Format a mean_interval dict as 'mean ± half-width', or the mean alone without an interval."""
    if interval is None or _is_missing(interval.get("mean")):
        return "—"
    scale, decimals = (100.0, 2) if metric in PERCENT_METRICS else (1.0, 3)
    mean = scale * float(interval["mean"])
    low, high = interval.get("low"), interval.get("high")
    if _is_missing(low) or _is_missing(high):
        return f"{mean:.{decimals}f}"
    half_width = scale * (float(high) - float(low)) / 2.0
    return f"{mean:.{decimals}f} ± {half_width:.{decimals}f}"


def _csv_number(value: object) -> str:
    return "" if _is_missing(value) else repr(float(value))


def _is_missing(value: object) -> bool:
    """Check whether a metric value is absent or NaN."""
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _save(figure: Figure, path: str | Path) -> Path:
    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    return output
