"""Detector commands: white-marking detection, geometry checks, paint-out and the bias report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curator.cli.common import UserError, console, error_console, handle_errors, print_json, progress_bar, state_of

detect_app = typer.Typer(help="Run the OpenCV detectors on catalogued images.", no_args_is_help=True)
report_app = typer.Typer(help="Reports and contact sheets on a query.", no_args_is_help=True)

Words = Annotated[list[str] | None, typer.Argument(help="Query words selecting the images (default: all).")]
Workers = Annotated[int, typer.Option("--workers", help="Worker processes; 0 uses every core.", min=0)]


@detect_app.command("markings", context_settings={"ignore_unknown_options": True})
@handle_errors
def detect_markings_command(
    context: typer.Context,
    words: Words = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Score at or above which an image counts as marked (default 0.5).", min=0.0, max=1.0)] = None,
    workers: Workers = 0,
) -> None:
    """Find white painted erasures; results are stored as a detection run per detector version."""
    from curator.detection import detect_markings_in_catalog
    from curator.jobs import JobRecorder
    from curator.query import parse

    query = parse(words or [])
    catalog = state_of(context).catalog
    with JobRecorder(catalog, "detect-markings", {"query": str(query), "threshold": threshold}) as job, progress_bar() as bar:
        task = bar.add_task("detecting white marking", total=None, status="")

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            job.progress(done, total)

        summary = detect_markings_in_catalog(catalog, query, threshold=threshold, workers=workers or None, on_progress=on_progress)
        job.result = {"run_id": summary.run_id, "examined": summary.examined, "flagged": summary.flagged, "already_done": summary.already_done, "failed": len(summary.failures)}
        for line in summary.failures:
            job.log(line)
    console.print(
        f"{summary.detector} v{summary.version} (run {summary.run_id}, threshold {summary.threshold:g}): "
        f"examined {summary.examined} images, flagged {summary.flagged}, {summary.already_done} already done by this run, failed {len(summary.failures)}"
    )
    for line in summary.failures[:25]:
        error_console.print(f"failed: {line}", highlight=False)
    if summary.failures:
        raise typer.Exit(1)


@detect_app.command("geometry")
@handle_errors
def detect_geometry_command(
    context: typer.Context,
    words: Words = None,
    canonical: Annotated[bool, typer.Option("--canonical", help="Store a derived copy of each film flipped so the chest wall is on the left (method 'canonical').")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print every result as JSON.")] = False,
    workers: Workers = 0,
) -> None:
    """Check each film's chest-wall side and view against the catalogued side and view."""
    from curator.detection import check_geometry_in_catalog
    from curator.query import parse

    query = parse(words or [])
    state = state_of(context)
    with progress_bar() as bar:
        task = bar.add_task("checking geometry", total=None, status="")
        rows, failures = check_geometry_in_catalog(state.catalog, query, workers=workers or None, on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    if as_json:
        print_json([row.__dict__ for row in rows])
    side_checked = [row for row in rows if row.side_agrees is not None]
    view_checked = [row for row in rows if row.view_agrees is not None]
    side_bad = [row for row in side_checked if not row.side_agrees]
    view_bad = [row for row in view_checked if not row.view_agrees]
    if not as_json:
        if side_bad or view_bad:
            table = Table(title="disagreements for the curator to review (nothing was changed)")
            for column in ("id", "dataset", "catalogued", "chest wall", "expected", "view guess", "MLO score", "file"):
                table.add_column(column)
            disagreeing = {row.image_id: row for row in side_bad + view_bad}
            for row in sorted(disagreeing.values(), key=lambda item: item.image_id):
                table.add_row(str(row.image_id), row.dataset, f"{row.view or '?'}-{(row.side or '?').lower()}", row.chest_wall, row.expected_chest_wall or "-", row.view_guess, f"{row.view_score:.2f}", Path(row.path).name)
            console.print(table)
        console.print(
            f"checked {len(rows)} films: chest-wall side disagrees with the catalogued side on {len(side_bad)} of {len(side_checked)} "
            f"with a known convention; view guess disagrees on {len(view_bad)} of {len(view_checked)}"
        )
    if canonical:
        made = _store_canonical(state, rows)
        console.print(f"stored {made} canonical copies (flipped so the chest wall is on the left); undo with the transform in each row's params")
    for line in failures[:25]:
        error_console.print(f"failed: {line}", highlight=False)
    if failures:
        raise typer.Exit(1)


def _store_canonical(state, rows) -> int:
    from curator.catalog import NewImage, store_new_image
    from curator.detectors.geometry import to_canonical
    from curator.imaging import read_gray
    from curator.models import Image

    made = 0
    for row in rows:
        with state.catalog.transaction() as session:
            image = session.get(Image, row.image_id)
            pixels = read_gray(Path(image.file_path))
            flipped, transform = to_canonical(pixels, row.chest_wall)
            new = NewImage(
                pixels=flipped, origin="derived", method="canonical", params={"transform": transform, "chest_wall": row.chest_wall},
                parents=[(image.id, "parent")], label=image.label, label_source="parent", view=image.view, view_source="parent",
                side=image.side, side_source="parent", dataset=image.dataset, patient_key=image.patient_key,
            )
            _, is_new = store_new_image(session, state.settings, new, work_size=int(image.extra.get("work_size", 128)), fit=str(image.extra.get("work_fit", "stretch")))
            made += int(is_new)
    return made


@detect_app.command("evaluate")
@handle_errors
def detect_evaluate_command(
    data: Annotated[Path, typer.Option("--data", help="Folder holding mammo-sample/ and mias-sample/ with their manifest.csv (column has_white_marking).")] = Path("../shared/data"),
    threshold: Annotated[float | None, typer.Option("--threshold", help="Decision threshold (default 0.5).")] = None,
    workers: Workers = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full results as JSON.")] = False,
) -> None:
    """Score the marking detector against hand labels: precision and recall per dataset."""
    from curator.detectors.evaluate import evaluate_manifest
    from curator.detectors.markings import DEFAULT_THRESHOLD

    manifests = sorted(path for path in data.glob("*/manifest.csv"))
    if not manifests:
        raise UserError(f"no */manifest.csv found under {data}")
    results = {}
    for manifest in manifests:
        result = evaluate_manifest(manifest, threshold=DEFAULT_THRESHOLD if threshold is None else threshold, processes=max(1, workers))
        results[manifest.parent.name] = result
        if not as_json:
            precision = "n/a" if result["precision"] is None else f"{result['precision']:.3f}"
            recall = "n/a" if result["recall"] is None else f"{result['recall']:.3f}"
            console.print(
                f"{manifest.parent.name}: {result['images']} images, TP {result['tp']} FP {result['fp']} FN {result['fn']} TN {result['tn']}, "
                f"precision {precision}, recall {recall}, {result['seconds_per_image'] * 1000:.0f} ms per image"
            )
            for miss in result["misclassified"]:
                console.print(f"  wrong: {miss['path']} (expected {'marked' if miss['expected'] else 'unmarked'}, score {miss['score']:.2f})", highlight=False)
    if as_json:
        print_json({name: {key: value for key, value in result.items() if key != "results"} for name, result in results.items()})


def clean_command(
    context: typer.Context,
    words: Words = None,
    sheet: Annotated[Path | None, typer.Option("--sheet", help="Write a before/after contact sheet PNG here.")] = None,
) -> None:
    """Paint out the marking boxes (curator-drawn, else detected) into derived images."""
    from curator.cleaning import clean_images, contact_sheet_for_query
    from curator.jobs import JobRecorder
    from curator.query import parse

    query = parse(words or [])
    state = state_of(context)
    with JobRecorder(state.catalog, "clean", {"query": str(query)}) as job, progress_bar() as bar:
        task = bar.add_task("painting out marking", total=None, status="")

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            job.progress(done, total)

        summary = clean_images(state.catalog, state.settings, query, on_progress=on_progress)
        job.result = {"created": len(summary.created), "existing": len(summary.existing), "without_boxes": summary.without_boxes, "failed": len(summary.failures)}
    console.print(f"cleaned {len(summary.created)} images ({len(summary.existing)} already cleaned, {summary.without_boxes} without marking boxes, {len(summary.failures)} failed)")
    if summary.pairs:
        ids = sorted({parent for parent, _ in summary.pairs})
        target = sheet or state.settings.reports_dir / "clean-contact-sheet.png"
        path, count = contact_sheet_for_query(state.catalog, state.settings, parse([f"id:{image_id}" for image_id in ids]), target)
        console.print(f"contact sheet of {count} before/after pairs: {path}")
    for line in summary.failures[:25]:
        error_console.print(f"failed: {line}", highlight=False)
    if summary.failures:
        raise typer.Exit(1)


@report_app.command("bias", context_settings={"ignore_unknown_options": True})
@handle_errors
def report_bias_command(
    context: typer.Context,
    words: Words = None,
    positive: Annotated[str | None, typer.Option("--positive", help="Label the marking is taken to predict (default: the label with the highest marked share).")] = None,
    chart: Annotated[Path | None, typer.Option("--chart", help="Where to write the PNG chart (default: reports/bias.png in the data home).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Crosstab marking against label and score the marking-only shortcut."""
    from curator.bias import bias_report, plot_bias
    from curator.query import parse

    query = parse(words or [])
    state = state_of(context)
    report = bias_report(state.catalog, query, positive_label=positive)
    path = plot_bias(report, chart or state.settings.reports_dir / "bias.png")
    report["chart"] = str(path)
    if as_json:
        print_json(report)
        return
    table = Table(title=f"marking against label ({report['images']} images" + (f" matching '{report['query']}')" if report["query"] else ")"))
    for column in ("label", "marked", "unmarked", "unchecked", "marked share"):
        table.add_column(column)
    for label, counts in report["crosstab"].items():
        decided = counts.get("marked", 0) + counts.get("unmarked", 0)
        share = f"{counts.get('marked', 0) / decided:.0%}" if decided else "-"
        table.add_row(label, str(counts.get("marked", 0)), str(counts.get("unmarked", 0)), str(counts.get("unchecked", 0)), share)
    console.print(table)
    group_table = Table(title="marked / total per view and side")
    group_table.add_column("view-side")
    labels = list(report["crosstab"])
    for label in labels:
        group_table.add_column(label)
    for group, per_label in report["by_view_side"].items():
        cells = []
        for label in labels:
            counts = per_label.get(label, {})
            cells.append(f"{counts.get('marked', 0)}/{sum(counts.values())}" if counts else "-")
        group_table.add_row(group, *cells)
    console.print(group_table)
    marked_ids = report["marked_ids"]
    if marked_ids:
        shown = ", ".join(map(str, marked_ids[:60])) + (" ..." if len(marked_ids) > 60 else "")
        console.print(f"marked images ({len(marked_ids)}): {shown}", highlight=False)
    shortcut = report["shortcut"]
    if "accuracy" in shortcut:
        console.print(
            f"shortcut 'marked means {shortcut['positive_label']}' on {shortcut['images']} checked images: accuracy {shortcut['accuracy']:.3f}, "
            f"ROC AUC {shortcut['roc_auc_flag']:.3f} (flag) / {shortcut['roc_auc_score']:.3f} (detector score), "
            f"sensitivity {shortcut['sensitivity']:.3f}, specificity {shortcut['specificity']:.3f}"
        )
    else:
        console.print(f"shortcut: {shortcut['note']}")
    if report["unchecked"]:
        console.print(f"{report['unchecked']} images have no detection or verdict yet: run 'curator detect markings' first")
    console.print(f"chart: {path}")


@report_app.command("contact", context_settings={"ignore_unknown_options": True})
@handle_errors
def report_contact_command(
    context: typer.Context,
    words: Words = None,
    out: Annotated[Path | None, typer.Option("--out", help="PNG path (default: reports/contact-sheet.png in the data home).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many images.", min=1)] = 48,
) -> None:
    """Write a contact sheet: each film with its marking boxes, beside its cleaned copy when one exists."""
    from curator.cleaning import contact_sheet_for_query
    from curator.query import parse

    state = state_of(context)
    path, count = contact_sheet_for_query(state.catalog, state.settings, parse(words or []), out or state.settings.reports_dir / "contact-sheet.png", limit=limit)
    if count == 0:
        raise UserError("no readable images match the query")
    console.print(f"contact sheet of {count} images: {path}")


def register(app: typer.Typer) -> None:
    """Add the detector, clean and report commands to the main application."""
    app.add_typer(detect_app, name="detect")
    app.add_typer(report_app, name="report")
    app.command("clean", context_settings={"ignore_unknown_options": True})(handle_errors(clean_command))
