"""The ``curator evaluate`` commands (a split, realism, memorisation, list, show) and
``curator experiment grid``. TensorFlow is imported only once a classifier starts training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from curator.cli.common import UserError, console, handle_errors, print_json, progress_bar, state_of
from curator.cli.splits import words_of


class SplitFirstGroup(TyperGroup):
    """A command group where an unknown first word is a split name: ``evaluate NAME`` runs ``evaluate run NAME``."""

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


evaluate_app = typer.Typer(
    cls=SplitFirstGroup,
    help="Evaluate splits with a MobileNetV2 classifier (curator evaluate NAME), and check models for realism and memorisation.",
    no_args_is_help=True,
)
experiment_app = typer.Typer(help="Run the augmentation study's grids of real and synthetic training-set sizes.", no_args_is_help=True)

Seeds = Annotated[int, typer.Option("--seeds", help="Number of classifier runs, with seeds 0 to N-1.", min=1)]
Weights = Annotated[str, typer.Option("--weights", help="Starting weights of MobileNetV2: 'imagenet' (downloaded once), 'none' (random), or the path of a .h5 file.")]
Epochs = Annotated[int, typer.Option("--epochs", help="Training epochs per run (warm-up with a frozen base included).", min=1)]
ImageSize = Annotated[int, typer.Option("--image-size", help="Side in pixels of the classifier's input; images are resized to it.", min=32)]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Images per training batch.", min=1)]
Positive = Annotated[str | None, typer.Option("--positive", help="Label counted as positive (default cancer); with more than two labels, this label against the rest.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def make_config(weights: str, epochs: int, image_size: int, batch_size: int) -> Any:
    """Build the library's EvalConfig, turning an invalid value into a one-line error."""
    from evaluation.classifier import EvalConfig

    try:
        return EvalConfig(weights=weights, epochs=epochs, image_size=image_size, batch_size=batch_size)
    except ValueError as error:
        raise UserError(f"invalid evaluation settings: {error}") from error


class TrainingMonitor:
    """Progress bars (runs and epochs), job progress, and the stop request of a background job."""

    def __init__(self, bar: Any, job: Any, runs: int, epochs: int, label: str) -> None:
        self.bar = bar
        self.job = job
        self.runs = runs
        self.epochs = epochs
        self.cancel_requested = False
        self.runs_task = bar.add_task(label, total=runs, status="")
        self.epochs_task = bar.add_task("epochs", total=epochs, status="")
        self.finished_runs = 0

    def on_epoch(self, epoch: dict) -> None:
        """Move the epoch bar and record job progress. Once the job is cancelled, ``stop_requested`` returns True."""
        from curator.jobs import JobCancelled

        validation = f", val acc {epoch['val_accuracy']:.3f}" if epoch.get("val_accuracy") is not None else ""
        run = self.finished_runs + 1
        self.bar.update(self.epochs_task, completed=epoch["epoch"], total=epoch["epochs"], description=f"run {run}/{self.runs} seed {epoch['seed']}",
                        status=f"loss {epoch['loss']:.3f}, acc {epoch['accuracy']:.3f}{validation}")
        try:
            self.job.progress(self.finished_runs * self.epochs + epoch["epoch"], self.runs * self.epochs, message=f"run {run}/{self.runs}")
        except JobCancelled:
            self.cancel_requested = True

    def on_run(self, run: dict) -> None:
        """Advance the run bar and show the run's test accuracy."""
        self.finished_runs += 1
        accuracy = run["result"]["metrics"]["accuracy"]
        self.bar.update(self.runs_task, completed=self.finished_runs, status=f"last test accuracy {accuracy:.3f}")
        self.bar.update(self.epochs_task, completed=0)
        self.job.log(f"run {self.finished_runs}/{self.runs} seed {run['seed']}: test accuracy {accuracy:.4f}")

    def stop_requested(self) -> bool:
        """Return True once the job was cancelled from another process."""
        return self.cancel_requested


@contextlib.contextmanager
def training(context: typer.Context, kind: str, params: dict[str, Any], runs: int, epochs: int, label: str) -> Iterator[tuple[Any, TrainingMonitor]]:
    """Open the catalog job and progress bars of a training command and turn library errors into one line."""
    from evaluation.classifier import WeightsUnavailableError

    from curator.jobs import JobRecorder

    state = state_of(context)
    try:
        with JobRecorder(state.catalog, kind, params) as job, progress_bar() as bar:
            yield job, TrainingMonitor(bar, job, runs, epochs, label)
    except WeightsUnavailableError as error:
        raise UserError(f"{error} (on the command line: --weights PATH or --weights none)") from None


def print_outcome(outcome: Any, as_json: bool, title: str) -> None:
    """Print an evaluation's summary metrics as a table or as JSON."""
    from curator.evaluate import format_metric

    if as_json:
        print_json({"evaluation": outcome.evaluation_id, "status": outcome.status, "seconds": outcome.seconds, "metrics": outcome.metrics})
        return
    if outcome.status != "done":
        console.print(f"evaluation {outcome.evaluation_id} {outcome.status}; no metrics were recorded")
        return
    table = Table(title=f"{title} (evaluation {outcome.evaluation_id}, {outcome.seconds:.0f} s)")
    table.add_column("metric")
    table.add_column("mean ± 95% interval", justify="right")
    table.add_column("runs", justify="right")
    for name, summary in outcome.metrics["summary"].items():
        table.add_row(name, format_metric(name, summary), str(summary.get("n", 0)))
    console.print(table)
    if outcome.metrics.get("learning_curves"):
        console.print(f"learning curves in {outcome.metrics['learning_curves']}", highlight=False)


@evaluate_app.command("run")
@handle_errors
def run_command(
    context: typer.Context,
    name: Annotated[str, typer.Argument(help="Split name.")],
    seeds: Seeds = 3,
    weights: Weights = "imagenet",
    epochs: Epochs = 20,
    image_size: ImageSize = 128,
    batch_size: BatchSize = 32,
    positive: Positive = None,
    as_json: AsJson = False,
) -> None:
    """Train and test MobileNetV2 on a split once per seed and record the metrics (locks the split)."""
    from curator.evaluate import evaluate_split, split_data

    state = state_of(context)
    config = make_config(weights, epochs, image_size, batch_size)
    data = split_data(state.catalog, state.settings, name, positive)
    params = {"split": name, "seeds": seeds, "config": config.to_dict(), "positive": data.positive}
    with training(context, "evaluate", params, seeds, epochs, f"evaluating {name}") as (job, monitor):
        outcome = evaluate_split(state.catalog, state.settings, name, config, list(range(seeds)), positive=positive,
                                 on_epoch=monitor.on_epoch, on_run=monitor.on_run, stop_requested=monitor.stop_requested, data=data)
        job.result = {"evaluation_id": outcome.evaluation_id, "status": outcome.status}
    print_outcome(outcome, as_json, f"split {name}: {data.positive} vs {data.negative}")


@evaluate_app.command("realism")
@handle_errors
def realism_command(
    context: typer.Context,
    model: Annotated[str, typer.Option("--model", help="Name (or id) of the generator whose samples are checked.")],
    count: Annotated[int | None, typer.Option("--count", help="Use at most this many training images and as many samples.", min=3)] = None,
    seeds: Seeds = 1,
    weights: Weights = "imagenet",
    epochs: Epochs = 10,
    image_size: ImageSize = 128,
    batch_size: BatchSize = 32,
    as_json: AsJson = False,
) -> None:
    """Train a classifier to tell a model's training images from its samples; near 50% accuracy means realistic samples."""
    from curator.evaluate import evaluate_realism

    state = state_of(context)
    config = make_config(weights, epochs, image_size, batch_size)
    params = {"model": model, "count": count, "seeds": seeds, "config": config.to_dict()}
    with training(context, "evaluate-realism", params, seeds, epochs, f"realism of {model}") as (job, monitor):
        outcome = evaluate_realism(state.catalog, state.settings, model, config, list(range(seeds)), count=count,
                                   on_epoch=monitor.on_epoch, on_run=monitor.on_run, stop_requested=monitor.stop_requested)
        job.result = {"evaluation_id": outcome.evaluation_id, "status": outcome.status}
    print_outcome(outcome, as_json, f"realism of {model}: real (0) vs synthetic (1)")


@evaluate_app.command("memorisation")
@handle_errors
def memorisation_command(
    context: typer.Context,
    model: Annotated[str, typer.Option("--model", help="Name (or id) of the generator whose synthetic images are checked.")],
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the PNG of the closest pairs; default the data home's reports/.")] = None,
    top: Annotated[int, typer.Option("--top", help="Number of closest pairs drawn in the PNG.", min=1)] = 8,
    as_json: AsJson = False,
) -> None:
    """Find each synthetic image's nearest training image by SSIM and flag near copies."""
    from curator.evaluate import evaluate_memorisation

    state = state_of(context)
    outcome = evaluate_memorisation(state.catalog, state.settings, model, out, top=top)
    if as_json:
        print_json({"evaluation": outcome.evaluation_id, "status": outcome.status, "metrics": outcome.metrics})
        return
    metrics = outcome.metrics
    console.print(f"evaluation {outcome.evaluation_id}: {metrics['near_copies']} of {metrics['synthetic']} synthetic images are near copies "
                  f"(SSIM >= {metrics['near_copy_ssim']}) of the {metrics['training']} training images; "
                  f"SSIM to the nearest: mean {metrics['ssim']['mean']:.3f}, max {metrics['ssim']['max']:.3f}", highlight=False)
    for pair in metrics["closest"][:5]:
        console.print(f"  synthetic {pair['synthetic_id']} ~ training {pair['training_id']}: SSIM {pair['ssim']:.3f}"
                      + (" (near copy)" if pair["near_copy"] else ""), highlight=False)
    console.print(f"closest pairs drawn in {metrics['plot']}", highlight=False)


@evaluate_app.command("list")
@handle_errors
def list_command(
    context: typer.Context,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind: classifier, realism or memorisation.")] = None,
    experiment: Annotated[str | None, typer.Option("--experiment", help="Only the evaluations of this experiment grid.")] = None,
    as_json: AsJson = False,
) -> None:
    """List the recorded evaluations with their headline result."""
    from curator.evaluate import KINDS, list_evaluations

    if kind is not None and kind not in KINDS:
        raise UserError(f"unknown --kind {kind!r}; expected one of {', '.join(KINDS)}")
    rows = list_evaluations(state_of(context).catalog, kind, experiment)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} evaluations")
    for column in ("id", "kind", "status", "split", "model", "experiment", "seeds", "result", "seconds"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["id"]), row["kind"], row["status"], row["split"] or "-", row["model"] or "-", row["experiment"] or "-",
                      str(len(row["seeds"])), row["headline"] or "-", f"{row['seconds']:.0f}" if row["seconds"] is not None else "-")
    console.print(table)


@evaluate_app.command("show")
@handle_errors
def show_command(
    context: typer.Context,
    evaluation_id: Annotated[int, typer.Argument(help="Evaluation id.")],
    as_json: AsJson = False,
) -> None:
    """Show one evaluation: its configuration, per-run metrics, summary and package versions."""
    from curator.evaluate import evaluation_details, format_metric

    details = evaluation_details(state_of(context).catalog, evaluation_id)
    if as_json:
        print_json(details)
        return
    title = f"[bold]evaluation {details['id']}[/] {details['kind']} {details['status']}"
    for key in ("split", "model", "experiment"):
        if details[key]:
            title += f", {key} {details[key]}"
    console.print(title, highlight=False)
    config = details["config"]
    console.print("  config   " + ", ".join(f"{key} {value}" for key, value in config.items() if not isinstance(value, (dict, list))), highlight=False)
    metrics = details["metrics"] or {}
    for name, summary in (metrics.get("summary") or {}).items():
        console.print(f"  {name:12} {format_metric(name, summary)} over {summary.get('n', 0)} runs", highlight=False)
    for run in metrics.get("runs", []):
        values = run["metrics"]
        console.print(f"  seed {run['seed']}: accuracy {values['accuracy']:.4f}, ROC AUC {_number(values.get('roc_auc'))}, "
                      f"sensitivity {_number(values.get('sensitivity'))}, specificity {_number(values.get('specificity'))}, "
                      f"confusion {values['confusion_matrix']}, {run['epochs_run']} epochs", highlight=False)
    if details["kind"] == "memorisation" and metrics:
        console.print(f"  near copies {metrics['near_copies']} of {metrics['synthetic']}; plot {metrics['plot']}", highlight=False)
    if details["versions"]:
        console.print("  versions " + ", ".join(f"{key} {value}" for key, value in details["versions"].items()), highlight=False)
    if details["seconds"] is not None:
        console.print(f"  took {details['seconds']:.1f} s", highlight=False)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _sizes(text: str, option: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise UserError(f"invalid {option} {text!r}; expected whole numbers separated by commas, e.g. 50,100,250") from error
    if not sizes or any(size < 0 for size in sizes):
        raise UserError(f"invalid {option} {text!r}; expected whole numbers of 0 or more separated by commas")
    return sizes


@experiment_app.command("grid")
@handle_errors
def grid_command(
    context: typer.Context,
    query: Annotated[list[str], typer.Option("--query", help="Query words selecting the real images, quoted as one string.")],
    real: Annotated[str, typer.Option("--real", help="Real training images per class, comma-separated (e.g. 50,100,250).")],
    synthetic: Annotated[str, typer.Option("--synthetic", help="Synthetic training images per class, comma-separated (e.g. 0,100,200).")] = "0",
    method: Annotated[str, typer.Option("--method", help="Query word for the synthetic images' method: sample, interpolation, ball, manipulation, cleaned.")] = "sample",
    model: Annotated[list[str] | None, typer.Option("--model", help="Only images of this generator (name or id); repeat for one model per class.")] = None,
    seeds: Seeds = 3,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="Share of each class's patients on the test side, the same for every cell.")] = 0.2,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of the training side's patients used for validation.")] = 0.1,
    split_seed: Annotated[int, typer.Option("--split-seed", help="Seed of the patient split and of the image draws.")] = 0,
    by_view: Annotated[bool, typer.Option("--by-view", help="Stratify the split by label and view.")] = False,
    weights: Weights = "imagenet",
    epochs: Epochs = 20,
    image_size: ImageSize = 128,
    batch_size: BatchSize = 32,
    positive: Positive = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the CSV, markdown table and PNG; default reports/experiment-NAME in the data home.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Experiment name; cells become splits NAME-rREAL-sSYNTHETIC (default: grid-DATE-TIME).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted grid of this name: finished cells are kept, the others are run.")] = False,
) -> None:
    """Evaluate every pair of real and synthetic training-set sizes on one fixed test side, and tabulate it."""
    import datetime as dt

    from curator.evaluate import GridSpec, run_grid

    if name is None:
        name = "grid-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    state = state_of(context)
    config = make_config(weights, epochs, image_size, batch_size)
    spec = GridSpec(name=name, query=words_of(query), real_sizes=_sizes(real, "--real"), synthetic_sizes=_sizes(synthetic, "--synthetic"),
                    method=method, models=tuple(model or ()), seeds=seeds, test_fraction=test_fraction, val_fraction=val_fraction,
                    split_seed=split_seed, by_view=by_view, positive=positive)
    cells = len(spec.real_sizes) * len(spec.synthetic_sizes)
    params = {"experiment": name, "cells": cells, "seeds": seeds, "config": config.to_dict()}
    with training(context, "experiment-grid", params, cells * seeds, epochs, f"grid {name}") as (job, monitor):
        def on_cell(cell: Any) -> None:
            if cell.status != "done":
                console.print(f"cell real {cell.real} + synthetic {cell.synthetic}: {cell.status}; {cell.reason}", highlight=False)
            job.log(f"cell {cell.real}+{cell.synthetic}: {cell.status}")

        report = run_grid(state.catalog, state.settings, spec, config, out, on_cell=on_cell, on_epoch=monitor.on_epoch,
                          on_run=monitor.on_run, stop_requested=monitor.stop_requested, resume=resume)
        job.result = {"evaluations": [cell.evaluation_id for cell in report.cells if cell.evaluation_id], "table": str(report.markdown_path)}
    console.print(report.markdown_path.read_text(encoding="utf-8"), highlight=False, markup=False, soft_wrap=True)
    written = [report.csv_path, report.markdown_path] + ([report.plot_path] if report.plot_path.is_file() else [])
    console.print(f"wrote {', '.join(map(str, written))}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``curator evaluate ...`` and ``curator experiment grid`` to the command line."""
    app.add_typer(evaluate_app, name="evaluate")
    app.add_typer(experiment_app, name="experiment")
