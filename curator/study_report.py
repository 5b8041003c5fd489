"""The study report: ``report.md`` and its pictures, with every number read back from catalog rows.

Numbers come from the Evaluation, Generator and Split rows the study wrote (their ids are
printed beside them), not from the stage results held in memory, so the report matches the
catalog.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from curator.catalog import stats
from curator.models import Evaluation, Generator, GeneratorImage, Image, Split, SplitMember
from curator.query import parse

if TYPE_CHECKING:
    from curator.study import Study

METRICS = ("accuracy", "roc_auc", "sensitivity", "specificity")


def percent(summary: dict[str, Any] | None) -> str:
    """Format a mean-with-interval summary in percent: ``mean ± half-width``."""
    if not summary or summary.get("mean") is None:
        return "-"
    mean, low, high = summary["mean"], summary.get("low"), summary.get("high")
    if low is None or high is None:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * (high - low) / 2:.1f}"


def _copy_picture(source: str | None, target: Path) -> str | None:
    """Copy a picture next to the report (unless it is already there); return its relative name."""
    if not source or not Path(source).exists():
        return None
    if Path(source).resolve().parent == target.resolve().parent:
        return Path(source).name
    shutil.copyfile(source, target)
    return target.name


def _constant_scores(metrics: dict[str, Any]) -> bool:
    """Return True when every run scored all its test images alike (a classifier that learned nothing)."""
    runs = metrics.get("runs") or []
    spreads = [max(run["scores"]) - min(run["scores"]) for run in runs if run.get("scores")]
    return bool(spreads) and all(spread < 1e-6 for spread in spreads)


def plot_arms(rows: list[dict[str, Any]], path: Path) -> Path:
    """Bar chart of test accuracy per training set with 95% interval error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["arm"] for row in rows]
    means = [100 * row["accuracy"]["mean"] for row in rows]
    errors = [100 * (row["accuracy"]["high"] - row["accuracy"]["low"]) / 2 if row["accuracy"].get("high") is not None else 0.0 for row in rows]
    figure, axis = plt.subplots(figsize=(max(5, 1.3 * len(rows)), 4))
    colours = ["#7f7f7f"] + ["#1f77b4"] * (len(rows) - 1)
    axis.bar(names, means, yerr=errors, capsize=6, color=colours[: len(rows)])
    for index, mean in enumerate(means):
        axis.text(index, mean + 1, f"{mean:.1f}", ha="center", va="bottom", fontsize=9)
    axis.axhline(50, color="#d62728", linewidth=0.8, linestyle="--", label="chance (balanced)")
    axis.set_ylim(0, 105)
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("test accuracy by training set (mean and 95% interval over seeds)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_report(study: Study, sections: dict[str, Any]) -> Path:
    """Write ``report.md`` and the pictures beside it; return the report's path."""
    out = study.out_dir
    out.mkdir(parents=True, exist_ok=True)
    catalog = study.catalog
    lines: list[str] = []
    caveats = list(study.result.caveats)

    summary = stats(catalog, parse(f"{study.base_words}"))
    lines += [
        f"# Augmentation study: {study.data_dir.name}",
        "",
        f"Data: `{study.data_dir}` ({study.kind}); preset `{study.preset.name}`; study tag `{study.tag}`; "
        f"catalog `{catalog.engine.url.render_as_string(hide_password=True)}`.",
        "",
        "## Dataset",
        "",
        f"{summary['total']} catalogued images from {summary['patients']} patients (query `{summary['query']}`).",
        "",
        "| field | counts |",
        "|---|---|",
    ]
    for field in ("label", "view", "side", "origin", "marking"):
        counts = ", ".join(f"{name} {count}" for name, count in sorted(summary[field].items()))
        lines.append(f"| {field} | {counts} |")
    imported = sections.get("import", {})
    if imported:
        lines += ["", f"Import: {imported.get('imported', 0)} new, {imported.get('already_present', 0)} already catalogued, "
                      f"{imported.get('failed', 0)} failed, skipped {imported.get('skipped', {})}."]

    bias = sections.get("bias", {})
    lines += ["", "## Marking bias", ""]
    if bias:
        lines += ["| label | marked | unmarked | unchecked |", "|---|---|---|---|"]
        for label, counts in bias.get("crosstab", {}).items():
            lines.append(f"| {label} | {counts.get('marked', 0)} | {counts.get('unmarked', 0)} | {counts.get('unchecked', 0)} |")
        shortcut = bias.get("shortcut", {})
        if shortcut.get("accuracy") is not None:
            lines += ["", f"Shortcut score: the rule 'marked means {shortcut['positive_label']}' alone reaches accuracy "
                          f"{shortcut['accuracy']:.3f} and ROC AUC {shortcut['roc_auc_flag']:.3f} on {shortcut['images']} images "
                          f"(detector score AUC {shortcut.get('roc_auc_score') or float('nan'):.3f})."]
        else:
            lines += ["", f"Shortcut score: {shortcut.get('note', 'not computed')}."]
        picture = _copy_picture(bias.get("chart"), out / "bias.png")
        if picture:
            lines += ["", f"![marking by label]({picture})"]
        if sections.get("clean", {}).get("sheet"):
            lines += ["", f"Painted marking removed from {sections['clean'].get('created', 0)} films: ![cleaned](cleaned.png)"]

    lines += ["", "## Split", ""]
    with catalog.session() as session:
        split = session.scalars(select(Split).where(Split.name == study.split_name)).first()
        if split is not None:
            sides = session.execute(
                select(SplitMember.side, Image.label, func.count()).join(Image, Image.id == SplitMember.image_id)
                .where(SplitMember.split_id == split.id).group_by(SplitMember.side, Image.label)
            ).all()
            table: dict[str, dict[str, int]] = {}
            for side, label, count in sides:
                table.setdefault(side, {})[label] = count
            lines += [f"Split `{split.name}` (id {split.id}) by patient, seed {split.seed}, query `{split.query}`.", "",
                      "| side | " + " | ".join(study.options.labels) + " |", "|---|" + "---|" * len(study.options.labels)]
            for side in ("train", "val", "test"):
                lines.append(f"| {side} | " + " | ".join(str(table.get(side, {}).get(label, 0)) for label in study.options.labels) + " |")

        lines += ["", "## Generators", "",
                  "Each flow was trained on the training side of the split only (never on validation or test images).", "",
                  "| generator | id | trained on | training / held-out images | steps | held-out bits/dim untrained | held-out bits/dim of the checkpoint used (step) | samples |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, _ in study.generator_plan():
            generator = session.scalars(select(Generator).where(Generator.name == name)).first()
            if generator is None:
                continue
            roles = dict(session.execute(select(GeneratorImage.role, func.count()).where(GeneratorImage.generator_id == generator.id).group_by(GeneratorImage.role)).all())
            grid = None
            sample_picture = sections.get("generation", {}).get(f"sample:{name}", {}).get("picture")
            grid = _copy_picture(sample_picture, out / f"samples-{name.removeprefix(study.split_name + '-')}.png")
            initial = f"{generator.initial_bits_per_dim:.3f}" if generator.initial_bits_per_dim is not None else "-"
            final = f"{generator.bits_per_dim:.3f}" if generator.bits_per_dim is not None else "-"
            if generator.best_step is not None:
                final += f" ({generator.best_step})"
            lines.append(f"| {name} | {generator.id} | `{generator.query}` | {roles.get('train', 0)} / {roles.get('heldout', 0)} | {generator.steps_done} | {initial} | {final} | "
                         + (f"![samples]({grid})" if grid else "-") + " |")
            if generator.bits_per_dim is not None and generator.initial_bits_per_dim is not None and generator.bits_per_dim >= generator.initial_bits_per_dim:
                caveats.append(f"Generator {name} did not lower its held-out bits per dimension; its images are close to noise.")

    generation = sections.get("generation", {})
    if generation:
        lines += ["", "## Generated images", ""]
        for key, value in generation.items():
            picture = _copy_picture(value.get("picture"), out / f"generated-{key.replace(':', '-').replace('>', '').replace(study.split_name + '-', '')}.png")
            line = f"- {key}: {value.get('created', 0)} new images"
            if picture:
                line += f" ![{key}]({picture})"
            if value.get("note"):
                line += f" ({value['note']})"
            lines.append(line)

    evaluation = sections.get("evaluation", {})
    lines += ["", "## Classifier accuracy", "",
              f"MobileNetV2 ({'weights ' + study.weights}), {study.preset.image_size}x{study.preset.image_size}, {study.preset.epochs} epochs at most, "
              f"{study.preset.seeds} seeds; positive class cancer. Mean ± half-width of the 95% interval (Student's t) over seeds, in percent.", "",
              "| training set | evaluation id | train images (real + synthetic) | test images | accuracy | ROC AUC | sensitivity | specificity | excluded by the leakage guard |",
              "|---|---|---|---|---|---|---|---|---|"]
    plot_rows = []
    constant_arms: list[str] = []
    with catalog.session() as session:
        for arm, result in evaluation.items():
            if result.get("status") != "done":
                lines.append(f"| {arm} | - | - | - | not run: {result.get('reason', result.get('status'))} | | | | |")
                continue
            row = session.get(Evaluation, result["evaluation_id"])
            metrics_summary = (row.metrics or {}).get("summary", {})
            counts = (row.metrics or {}).get("counts", {})
            split = session.get(Split, row.split_id)
            origins = dict(session.execute(
                select(Image.origin, func.count()).join(SplitMember, SplitMember.image_id == Image.id)
                .where(SplitMember.split_id == row.split_id, SplitMember.side == "train").group_by(Image.origin)
            ).all())
            synthetic = origins.get("synthetic", 0) + origins.get("derived", 0)
            excluded = result.get("excluded") or {}
            lines.append(
                f"| {arm} | {row.id} | {origins.get('original', 0)} + {synthetic} | {counts.get('test', {}).get('total', '-')} | "
                + " | ".join(percent(metrics_summary.get(metric)) for metric in METRICS)
                + f" | {sum(excluded.values()) if excluded else 0} |"
            )
            if metrics_summary.get("accuracy", {}).get("mean") is not None:
                plot_rows.append({"arm": arm, "accuracy": metrics_summary["accuracy"]})
            if _constant_scores(row.metrics or {}):
                constant_arms.append(arm)
            if split is not None and split.name != study.split_name and synthetic == 0:
                caveats.append(f"The '{arm}' training set received no synthetic images (all candidates were excluded or none existed).")
    if constant_arms:
        caveats.append(
            f"In every run of {', '.join(constant_arms)} the classifier gave all test images the same score (ROC AUC 0.5), so those rows "
            "measure nothing about augmentation. MobileNetV2 trained from random weights on this few images does not learn; "
            "pass --weights with a local copy of the ImageNet weights, or use more images."
        )
    if plot_rows:
        plot_arms(plot_rows, out / "accuracy.png")
        lines += ["", "![accuracy by training set](accuracy.png)"]

    checks = sections.get("checks", {})
    if checks:
        lines += ["", "## Realism and memorisation", ""]
        with catalog.session() as session:
            for key, result in checks.items():
                kind, name = key.split(":", 1)
                if result.get("status") != "done":
                    lines.append(f"- {kind} of {name}: not run ({result.get('reason', result.get('status'))})")
                    continue
                row = session.get(Evaluation, result["evaluation_id"])
                if kind == "realism":
                    accuracy = (row.metrics or {}).get("summary", {}).get("accuracy")
                    lines.append(f"- realism of {name} (evaluation {row.id}): a MobileNetV2 told real from generated images with accuracy {percent(accuracy)}% "
                                 "(50% means indistinguishable; the reference study's Glow samples were told apart 94-96% of the time).")
                else:
                    metrics = row.metrics or {}
                    picture = _copy_picture(metrics.get("plot"), out / f"memorisation-{name.removeprefix(study.split_name + '-')}.png")
                    lines.append(f"- memorisation of {name} (evaluation {row.id}): {metrics.get('near_copies')} of {metrics.get('synthetic')} synthetic images are near copies "
                                 f"(SSIM >= {metrics.get('near_copy_ssim')}) of a training image; highest SSIM {metrics.get('ssim', {}).get('max', float('nan')):.3f}, "
                                 f"median {metrics.get('ssim', {}).get('median', float('nan')):.3f}." + (f" ![closest pairs]({picture})" if picture else ""))

    with catalog.session() as session:
        test_count = session.scalar(select(func.count()).select_from(SplitMember).join(Split, Split.id == SplitMember.split_id)
                                    .where(Split.name == study.split_name, SplitMember.side == "test")) or 0
    if test_count < 100:
        caveats.append(f"The test side holds {test_count} images: the intervals are wide and differences between training sets of a few points are not evidence of an effect.")
    if study.preset.name == "small":
        caveats.append("The small preset trains each flow for a few hundred steps at 64x64 on a CPU; the reference study trained 128x128 flows (L=5, K=14) on a GPU. Use --preset study for comparable numbers.")

    lines += ["", "## Caveats", ""] + [f"- {caveat}" for caveat in dict.fromkeys(caveats)] + [
        "", "## Traceability", "",
        f"Every stage ran as a job with key prefix `study:{study.tag}:` (`curator jobs`). Evaluations: `curator evaluate list`; "
        f"splits: `curator split show {study.split_name}`; generators: `curator glow list`.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    study.result.report = path
    study.result.caveats = list(dict.fromkeys(caveats))
    return path
