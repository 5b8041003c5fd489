"""The catalog side of evaluations: turns stored splits and generators into arrays for the
``evaluation`` library, runs it, and records each result as an ``Evaluation`` row.

An evaluation row is written as ``running`` before training starts and gets its metrics only
when every run has finished, so an interrupted evaluation leaves a ``cancelled`` or ``failed``
row with empty metrics, never a partial result. TensorFlow is imported only when a run starts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from curator.catalog import work_pixels
from curator.db import Catalog, CatalogError
from curator.models import Evaluation, Generator, GeneratorImage, Image, Split
from curator.settings import Settings
from curator.splits import SplitError, SplitSpec, create_split, get_split, group_key, lock_split, split_members

if TYPE_CHECKING:
    from evaluation.classifier import EvalConfig
    from evaluation.datasets import SplitArrays

log = logging.getLogger(__name__)

DEFAULT_POSITIVE = "cancer"
KINDS = ("classifier", "realism", "memorisation")
# Test scores are kept per run so ROC curves can be drawn later without retraining.
RUN_FIELDS = ("seed", "metrics", "history", "epochs_run", "best_epoch", "seconds", "scores", "counts")


class EvaluationError(CatalogError):
    """An evaluation cannot start: wrong labels, missing images or an unknown model."""


@dataclass
class EvaluationData:
    """A split's images as arrays with 0/1 labels, the image ids behind them, and what 1 means."""

    arrays: SplitArrays
    ids: dict[str, list[int]]
    positive: str
    negative: str

    def counts(self) -> dict[str, dict[str, int]]:
        """Count images per part as ``{part: {total, positive, negative}}``."""
        result = {}
        for part in ("train", "val", "test"):
            labels = np.asarray(getattr(self.arrays, f"{part}_y"))
            result[part] = {"total": int(labels.size), "positive": int(labels.sum()), "negative": int(labels.size - labels.sum())}
        return result


@dataclass
class EvaluationOutcome:
    """Result of an evaluation call: the id of the row it wrote, its final status, metrics and run time."""

    evaluation_id: int
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def json_safe(value: Any) -> Any:
    """Return ``value`` with NaN and infinity as None and numpy scalars as Python numbers.

    PostgreSQL's JSON type rejects NaN, and the library reports an undefined metric (an AUC
    with one class, an interval from one run) as NaN.
    """
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def choose_classes(labels: Sequence[str], positive: str | None) -> tuple[str, list[str]]:
    """Return the positive label and the labels counted as negative.

    Two labels: ``positive`` (default cancer) against the other. More than two: an error unless
    ``positive`` is given, which then trains that label against all the rest.
    """
    present = sorted(set(labels))
    chosen = positive or DEFAULT_POSITIVE
    if chosen not in present:
        raise EvaluationError(f"positive label '{chosen}' is not in the split (labels: {', '.join(present)}); pass --positive LABEL")
    negatives = [label for label in present if label != chosen]
    if not negatives:
        raise EvaluationError(f"the split contains only '{chosen}' images; a classifier needs a second label")
    if len(negatives) > 1 and positive is None:
        raise EvaluationError(f"the split has {len(present)} labels ({', '.join(present)}); "
                              "pass --positive LABEL to train that label against the rest")
    return chosen, negatives


def _stack(settings: Settings, images: Sequence[Image], size: tuple[int, int] | None) -> np.ndarray:
    """Read working derivatives into an (N, H, W) uint8 array, all the size of the first one."""
    pixels = []
    for image in images:
        array = work_pixels(settings, image)
        if size is None:
            size = array.shape
        elif array.shape != size:
            raise EvaluationError(f"image {image.id} has working size {array.shape[1]}x{array.shape[0]}, others "
                                  f"{size[1]}x{size[0]}; re-import with one --work-size")
        pixels.append(array)
    if not pixels:
        height, width = size if size is not None else (0, 0)
        return np.zeros((0, height, width), dtype=np.uint8)
    return np.stack(pixels)


def split_data(catalog: Catalog, settings: Settings, split_name: str, positive: str | None = None) -> EvaluationData:
    """Load a split's working derivatives as train, validation and test arrays with 0/1 labels."""
    from evaluation.datasets import SplitArrays

    with catalog.session() as session:
        members = split_members(session, get_split(session, split_name))
    if not members:
        raise EvaluationError(f"split '{split_name}' has no images")
    chosen, _ = choose_classes([image.label for image, _ in members if image.label], positive)
    negative = _negative_name([image.label for image, _ in members if image.label], chosen)

    values: dict[str, np.ndarray] = {}
    ids: dict[str, list[int]] = {}
    size: tuple[int, int] | None = None
    for part in ("train", "val", "test"):
        images = [image for image, side in members if side == part]
        stacked = _stack(settings, images, size)
        if len(stacked):
            size = stacked.shape[1:]
        values[f"{part}_x"] = stacked
        values[f"{part}_y"] = np.array([1 if image.label == chosen else 0 for image in images], dtype=np.int64)
        ids[part] = [image.id for image in images]
    # An empty part stacked before the first image was read has no size; give it the common one.
    for part in ("train", "val", "test"):
        if len(values[f"{part}_x"]) == 0 and size is not None:
            values[f"{part}_x"] = np.zeros((0, *size), dtype=np.uint8)
    return EvaluationData(SplitArrays(**values), ids, chosen, negative)


def _negative_name(labels: Sequence[str], positive: str) -> str:
    negatives = sorted(set(labels) - {positive})
    return negatives[0] if len(negatives) == 1 else "rest"


def check_weights(config: EvalConfig) -> None:
    """Make sure the classifier's starting weights are at hand before any row is written.

    Raises the library's WeightsUnavailableError with a one-line message when ImageNet weights
    cannot be downloaded or a weights file is missing.
    """
    from evaluation.classifier import WeightsUnavailableError, imagenet_weights_file

    if config.weights == "imagenet":
        imagenet_weights_file(config.alpha, config.image_size)
    elif config.weights != "none" and not Path(config.weights).expanduser().is_file():
        raise WeightsUnavailableError(f"weights file not found: {config.weights}; pass an existing .h5 file, 'imagenet' or 'none'")


def _start_row(catalog: Catalog, kind: str, config: dict[str, Any], seeds: Sequence[int], split_id: int | None = None,
               generator_id: int | None = None, experiment: str | None = None) -> int:
    with catalog.transaction() as session:
        if split_id is not None:
            lock_split(session, session.get(Split, split_id))
        row = Evaluation(kind=kind, split_id=split_id, generator_id=generator_id, experiment=experiment, config=json_safe(config),
                         seeds=[int(seed) for seed in seeds], metrics={}, versions={}, status="running")
        session.add(row)
        session.flush()
        return row.id


def _finish_row(catalog: Catalog, evaluation_id: int, status: str, seconds: float, metrics: dict[str, Any] | None = None,
                versions: dict[str, Any] | None = None) -> None:
    with catalog.transaction() as session:
        row = session.get(Evaluation, evaluation_id)
        row.status = status
        row.seconds = seconds
        if metrics is not None:
            row.metrics = json_safe(metrics)
        if versions is not None:
            row.versions = json_safe(versions)


def _run_recorded(catalog: Catalog, evaluation_id: int, work: Callable[[], tuple[dict[str, Any], dict[str, Any], bool]]) -> EvaluationOutcome:
    """Run ``work`` and store its metrics; mark the row cancelled or failed, with no metrics, when it does not finish."""
    started = time.perf_counter()
    try:
        metrics, versions, stopped = work()
    except KeyboardInterrupt:
        _finish_row(catalog, evaluation_id, "cancelled", time.perf_counter() - started)
        raise
    except BaseException:
        _finish_row(catalog, evaluation_id, "failed", time.perf_counter() - started)
        raise
    seconds = time.perf_counter() - started
    if stopped:
        _finish_row(catalog, evaluation_id, "cancelled", seconds, versions=versions)
        return EvaluationOutcome(evaluation_id, "cancelled", {}, seconds)
    _finish_row(catalog, evaluation_id, "done", seconds, metrics, versions)
    return EvaluationOutcome(evaluation_id, "done", json_safe(metrics), seconds)


def _run_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Keep the per-run fields worth storing from an ``evaluate_seeds`` result."""
    return {"summary": result["summary"], "runs": [{key: run.get(key) for key in RUN_FIELDS} for run in result["runs"]]}


def evaluate_split(
    catalog: Catalog,
    settings: Settings,
    split_name: str,
    config: EvalConfig,
    seeds: Sequence[int],
    positive: str | None = None,
    experiment: str | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_run: Callable[[dict], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    data: EvaluationData | None = None,
) -> EvaluationOutcome:
    """Train and test a classifier on a split once per seed, lock the split and record the result.

    Metrics hold ``summary`` (mean and 95% interval of accuracy, ROC AUC, sensitivity and
    specificity), ``runs`` (per seed: metrics, history, test scores), ``counts`` and ``test_ids``.
    """
    from evaluation.classifier import package_versions
    from evaluation.runs import evaluate_seeds

    data = data or split_data(catalog, settings, split_name, positive)
    check_weights(config)
    with catalog.session() as session:
        split_id = get_split(session, split_name).id
    row_config = config.to_dict() | {"split": split_name, "positive": data.positive, "negative": data.negative}
    evaluation_id = _start_row(catalog, "classifier", row_config, seeds, split_id=split_id, experiment=experiment)
    log.info("evaluation %d: split %s, %d seeds, %s", evaluation_id, split_name, len(seeds), data.counts())

    def work() -> tuple[dict[str, Any], dict[str, Any], bool]:
        versions = package_versions()
        result = evaluate_seeds(data.arrays, config, list(seeds), on_run=on_run, on_epoch=on_epoch, stop_requested=stop_requested)
        metrics = _run_summary(result) | {"counts": data.counts(), "test_ids": data.ids["test"]}
        if not result["stopped"] and result["runs"]:
            from evaluation.report import plot_learning_curves

            curves = plot_learning_curves(result["runs"], settings.reports_dir / f"evaluation-{evaluation_id}-learning-curves.png")
            metrics["learning_curves"] = str(curves)
        return metrics, versions, bool(result["stopped"])

    return _run_recorded(catalog, evaluation_id, work)


def find_generator(session: Session, key: str) -> Generator:
    """Return the generator with this name (or id) or raise EvaluationError."""
    condition = Generator.name == key
    if key.isdigit():
        condition = or_(condition, Generator.id == int(key))
    generator = session.scalars(select(Generator).where(condition).order_by(Generator.id)).first()
    if generator is None:
        raise EvaluationError(f"model '{key}' not found; 'curator glow list' shows the trained models")
    return generator


def _generator_images(session: Session, generator: Generator, roles: tuple[str, ...] = ("train",)) -> tuple[list[Image], list[Image]]:
    """Return a generator's real images in the given roles and its synthetic images, by id."""
    training = list(session.scalars(
        select(Image).join(GeneratorImage, GeneratorImage.image_id == Image.id)
        .where(GeneratorImage.generator_id == generator.id, GeneratorImage.role.in_(roles)).order_by(Image.id)
    ))
    synthetic = list(session.scalars(
        select(Image).where(Image.generator_id == generator.id, Image.origin == "synthetic").order_by(Image.id)
    ))
    return training, synthetic


def realism_arrays(real: Sequence[tuple[np.ndarray, str]], synthetic: np.ndarray, test_fraction: float, val_fraction: float,
                   seed: int) -> tuple[SplitArrays, dict[str, dict[str, int]]]:
    """Split real images (label 0) by patient and synthetic images (label 1) one by one into three parts.

    ``real`` pairs each image with its patient group, so no patient's images are both trained
    and tested on. Each part keeps the ratio of real to synthetic images.
    """
    from evaluation.datasets import SplitArrays

    rng = np.random.default_rng(seed)
    groups = sorted({group for _, group in real})
    order = rng.permutation(len(groups))
    test_groups = max(1, round(len(groups) * test_fraction))
    val_groups = round(len(groups) * val_fraction)
    if test_groups + val_groups >= len(groups):
        raise EvaluationError(f"{len(groups)} real patients are too few for test fraction {test_fraction} and validation fraction {val_fraction}")
    part_of_group = {groups[index]: _part_at(position, test_groups, val_groups) for position, index in enumerate(order)}

    synthetic_order = rng.permutation(len(synthetic))
    synthetic_test = max(1, round(len(synthetic) * test_fraction))
    synthetic_val = round(len(synthetic) * val_fraction)
    if synthetic_test + synthetic_val >= len(synthetic):
        raise EvaluationError(f"{len(synthetic)} synthetic images are too few for test fraction {test_fraction} and validation fraction {val_fraction}")
    part_of_synthetic = {int(index): _part_at(position, synthetic_test, synthetic_val) for position, index in enumerate(synthetic_order)}

    size = synthetic.shape[1:]
    values: dict[str, np.ndarray] = {}
    counts: dict[str, dict[str, int]] = {}
    for part in ("train", "val", "test"):
        real_part = [pixels for pixels, group in real if part_of_group[group] == part]
        synthetic_part = [synthetic[index] for index in range(len(synthetic)) if part_of_synthetic[index] == part]
        stacked = real_part + synthetic_part
        values[f"{part}_x"] = np.stack(stacked) if stacked else np.zeros((0, *size), dtype=np.uint8)
        values[f"{part}_y"] = np.array([0] * len(real_part) + [1] * len(synthetic_part), dtype=np.int64)
        counts[part] = {"real": len(real_part), "synthetic": len(synthetic_part)}
    return SplitArrays(**values), counts


def _part_at(position: int, test_count: int, val_count: int) -> str:
    """Return the part of the item at ``position`` in a shuffled order: test first, then validation, then train."""
    if position < test_count:
        return "test"
    if position < test_count + val_count:
        return "val"
    return "train"


def _resize_to(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if pixels.shape == size:
        return pixels
    return cv2.resize(pixels, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _pick(items: list[Any], count: int | None, rng: np.random.Generator) -> list[Any]:
    if count is None or count >= len(items):
        return list(items)
    return [items[index] for index in sorted(rng.permutation(len(items))[:count])]


def evaluate_realism(
    catalog: Catalog,
    settings: Settings,
    model: str,
    config: EvalConfig,
    seeds: Sequence[int],
    count: int | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    on_epoch: Callable[[dict], None] | None = None,
    on_run: Callable[[dict], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> EvaluationOutcome:
    """Train a classifier to tell a model's training images (0) from its samples (1) and record it as 'realism'.

    Accuracy near 0.5 means the samples pass for real. In the Glow study on mini-DDSM, a
    MobileNetV2 separated samples from real images 94% (normal) and 96% (cancer) of the time.
    ``count`` caps the images used from each group.
    """
    from evaluation.classifier import package_versions
    from evaluation.runs import evaluate_seeds

    rng = np.random.default_rng(split_seed)
    with catalog.session() as session:
        generator = find_generator(session, model)
        # Held-out images are as real as the training ones, because realism is about the class, not about
        # what the flow saw. Using both gives the classifier more patients to split.
        training, synthetic = _generator_images(session, generator, roles=("train", "heldout"))
        samples = [image for image in synthetic if image.method == "sample"]
    if len(training) < 3 or len(samples) < 3:
        raise EvaluationError(f"model '{generator.name}' has {len(training)} training images and {len(samples)} samples; "
                              "the realism check needs at least 3 of each (generate samples first)")
    training = _pick(training, count, rng)
    samples = _pick(samples, count, rng)
    synthetic_pixels = _stack(settings, samples, None)
    size = synthetic_pixels.shape[1:]
    # NOTE: training images whose working size differs from the samples' are resized to it here.
    real = [(_resize_to(work_pixels(settings, image), size), group_key(image.id, image.patient_key)) for image in training]
    arrays, counts = realism_arrays(real, synthetic_pixels, test_fraction, val_fraction, split_seed)
    check_weights(config)

    row_config = config.to_dict() | {"model": generator.name, "count": count, "test_fraction": test_fraction,
                                     "val_fraction": val_fraction, "split_seed": split_seed, "labels": {"0": "real", "1": "synthetic"}}
    evaluation_id = _start_row(catalog, "realism", row_config, seeds, generator_id=generator.id)

    def work() -> tuple[dict[str, Any], dict[str, Any], bool]:
        versions = package_versions()
        result = evaluate_seeds(arrays, config, list(seeds), on_run=on_run, on_epoch=on_epoch, stop_requested=stop_requested)
        metrics = _run_summary(result) | {"counts": counts, "real_ids": [image.id for image in training],
                                          "synthetic_ids": [image.id for image in samples]}
        return metrics, versions, bool(result["stopped"])

    return _run_recorded(catalog, evaluation_id, work)


def evaluate_memorisation(catalog: Catalog, settings: Settings, model: str, output_dir: Path | None = None, top: int = 8,
                          kept_pairs: int = 50) -> EvaluationOutcome:
    """Pair every synthetic image of a model with its nearest training image by SSIM and record it as 'memorisation'.

    Pairs at or above the library's near-copy SSIM threshold count as near copies. A PNG shows
    the ``top`` closest pairs, each synthetic image above its nearest training image.
    """
    from evaluation.memorisation import NEAR_COPY_SSIM, nearest_neighbours, plot_nearest_pairs

    with catalog.session() as session:
        generator = find_generator(session, model)
        training, synthetic = _generator_images(session, generator)
    if not training or not synthetic:
        raise EvaluationError(f"model '{generator.name}' has {len(training)} training images and {len(synthetic)} synthetic images; "
                              "the memorisation check needs both")
    synthetic_pixels = _stack(settings, synthetic, None)
    size = synthetic_pixels.shape[1:]
    training_pixels = np.stack([_resize_to(work_pixels(settings, image), size) for image in training])

    evaluation_id = _start_row(catalog, "memorisation", {"model": generator.name, "metric": "ssim", "near_copy_ssim": NEAR_COPY_SSIM,
                                                         "work_size": list(size)}, [], generator_id=generator.id)
    folder = output_dir or settings.reports_dir
    plot_path = Path(folder) / f"memorisation-{generator.id}-{evaluation_id}.png"

    def work() -> tuple[dict[str, Any], dict[str, Any], bool]:
        pairs = nearest_neighbours(synthetic_pixels, training_pixels, metric="ssim")
        plot_nearest_pairs(pairs, synthetic_pixels, training_pixels, plot_path, top=top)
        similarities = np.array([pair.ssim for pair in pairs])
        closest = sorted(pairs, key=lambda pair: pair.ssim, reverse=True)[:kept_pairs]
        metrics = {
            "synthetic": len(synthetic),
            "training": len(training),
            "near_copies": int(sum(pair.near_copy for pair in pairs)),
            "near_copy_ssim": NEAR_COPY_SSIM,
            "ssim": {"mean": float(similarities.mean()), "median": float(np.median(similarities)), "max": float(similarities.max()),
                     "min": float(similarities.min())},
            "closest": [{"synthetic_id": synthetic[pair.synthetic_index].id, "training_id": training[pair.training_index].id,
                         "ssim": pair.ssim, "l2": pair.l2, "near_copy": pair.near_copy} for pair in closest],
            "plot": str(plot_path),
        }
        return metrics, {"numpy": np.__version__}, False

    return _run_recorded(catalog, evaluation_id, work)


def list_evaluations(catalog: Catalog, kind: str | None = None, experiment: str | None = None) -> list[dict[str, Any]]:
    """Return the evaluations, newest last, with their headline numbers."""
    with catalog.session() as session:
        statement = select(Evaluation, Split.name, Generator.name).outerjoin(Split, Split.id == Evaluation.split_id) \
            .outerjoin(Generator, Generator.id == Evaluation.generator_id).order_by(Evaluation.id)
        if kind is not None:
            statement = statement.where(Evaluation.kind == kind)
        if experiment is not None:
            statement = statement.where(Evaluation.experiment == experiment)
        rows = []
        for evaluation, split_name, generator_name in session.execute(statement):
            rows.append({
                "id": evaluation.id, "kind": evaluation.kind, "status": evaluation.status, "split": split_name,
                "model": generator_name, "experiment": evaluation.experiment, "seeds": evaluation.seeds,
                "seconds": evaluation.seconds, "headline": headline(evaluation),
                "created_at": evaluation.created_at.isoformat() if evaluation.created_at else None,
            })
        return rows


def headline(evaluation: Evaluation) -> str:
    """Return the one-line result of an evaluation: accuracy with its interval, or near copies."""
    metrics = evaluation.metrics or {}
    if evaluation.kind == "memorisation" and "near_copies" in metrics:
        return f"{metrics['near_copies']} near copies of {metrics['synthetic']}, max SSIM {metrics['ssim']['max']:.3f}"
    accuracy = (metrics.get("summary") or {}).get("accuracy")
    if not accuracy or accuracy.get("mean") is None:
        return ""
    return format_metric("accuracy", accuracy)


def format_interval(summary: dict[str, Any], scale: float = 100.0, digits: int = 2) -> str:
    """Format a ``mean_interval`` summary as ``mean ± half-width`` (``mean`` alone for one run)."""
    mean = summary.get("mean")
    if mean is None:
        return "-"
    low, high = summary.get("low"), summary.get("high")
    if low is None or high is None:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {(high - low) / 2 * scale:.{digits}f}"


def format_metric(name: str, summary: dict[str, Any]) -> str:
    """Format one metric's summary: accuracy, sensitivity and specificity in percent, ROC AUC as a fraction."""
    if name == "roc_auc":
        return format_interval(summary, scale=1.0, digits=3)
    return format_interval(summary) + (" %" if summary.get("mean") is not None else "")


def evaluation_details(catalog: Catalog, evaluation_id: int) -> dict[str, Any]:
    """Return every stored field of one evaluation, with its split and model names."""
    with catalog.session() as session:
        evaluation = session.get(Evaluation, evaluation_id)
        if evaluation is None:
            raise EvaluationError(f"evaluation {evaluation_id} not found; 'curator evaluate list' shows the evaluations")
        split = session.get(Split, evaluation.split_id) if evaluation.split_id else None
        generator = session.get(Generator, evaluation.generator_id) if evaluation.generator_id else None
        return {
            "id": evaluation.id, "kind": evaluation.kind, "status": evaluation.status, "experiment": evaluation.experiment,
            "split": split.name if split else None, "model": generator.name if generator else None,
            "config": evaluation.config, "seeds": evaluation.seeds, "metrics": evaluation.metrics,
            "versions": evaluation.versions, "seconds": evaluation.seconds,
            "created_at": evaluation.created_at.isoformat() if evaluation.created_at else None,
        }


@dataclass(frozen=True)
class GridSpec:
    """An experiment grid: every pair of real and synthetic training-set sizes (images per class).

    All cells share one patient split (same query, fractions and ``split_seed``), so they are
    tested on the same images. The real and synthetic draws are nested, so a larger cell
    contains the images of every smaller one.
    """

    name: str
    query: str
    real_sizes: tuple[int, ...]
    synthetic_sizes: tuple[int, ...] = (0,)
    method: str = "sample"
    models: tuple[str, ...] = ()
    seeds: int = 3
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    split_seed: int = 0
    by_view: bool = False
    positive: str | None = None

    def synthetic_query(self) -> str:
        """Return the query words that select the candidate synthetic images."""
        return " ".join([self.method, *(f"model:{model}" for model in self.models)])

    def cell_name(self, real: int, synthetic: int) -> str:
        """Return the split name of one cell."""
        return f"{self.name}-r{real}-s{synthetic}"

    def split_spec(self, real: int, synthetic: int) -> SplitSpec:
        """Return the split specification of one cell."""
        return SplitSpec(name=self.cell_name(real, synthetic), query=self.query, test_fraction=self.test_fraction,
                         val_fraction=self.val_fraction, seed=self.split_seed, by_view=self.by_view, train_per_class=real,
                         synthetic_query=self.synthetic_query() if synthetic else None,
                         synthetic_per_class=synthetic if synthetic else None)


@dataclass
class GridCell:
    """One cell of a grid: its sizes, its split and evaluation, and its summary or why it was not run."""

    real: int
    synthetic: int
    split: str
    status: str
    evaluation_id: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


@dataclass
class GridReport:
    """A finished grid: its cells and the table and chart files written for it."""

    cells: list[GridCell]
    csv_path: Path
    markdown_path: Path
    plot_path: Path


def check_grid(catalog: Catalog, spec: GridSpec, config: EvalConfig, resume: bool = False) -> None:
    """Reject invalid sizes, and a grid name already in use unless ``resume`` continues that same grid.

    A grid is resumed only when every existing cell split was built with the same settings and
    every finished cell was evaluated with the same classifier settings.
    """
    from curator.query import parse
    from curator.splits import check_name

    if not spec.real_sizes or any(size < 1 for size in spec.real_sizes):
        raise EvaluationError(f"real sizes must be 1 or more images per class, got {list(spec.real_sizes)}")
    if any(size < 0 for size in spec.synthetic_sizes):
        raise EvaluationError(f"synthetic sizes must be 0 or more images per class, got {list(spec.synthetic_sizes)}")
    if spec.seeds < 1:
        raise EvaluationError(f"a grid needs at least one seed, got {spec.seeds}")
    parse(spec.synthetic_query())
    cells = {spec.cell_name(real, synthetic): spec.split_spec(real, synthetic) for real in spec.real_sizes for synthetic in spec.synthetic_sizes}
    for name in cells:
        check_name(name)

    with catalog.session() as session:
        evaluations = list(session.scalars(select(Evaluation).where(Evaluation.experiment == spec.name)))
        splits = list(session.scalars(select(Split).where(Split.name.in_(list(cells)))))
    if not resume:
        if evaluations:
            raise EvaluationError(f"experiment '{spec.name}' already has evaluations; choose another name or pass --resume to finish it")
        if splits:
            raise EvaluationError(f"splits {', '.join(sorted(split.name for split in splits))} already exist; "
                                  "choose another experiment name or pass --resume")
        return
    for split in splits:
        wanted = cells[split.name]
        stored = {key: split.params.get(key) for key in wanted.params()}
        synthetic_query = str(parse(wanted.synthetic_query)) if wanted.synthetic_query else None
        if stored != wanted.params() or split.query != str(parse(wanted.query)) or split.seed != wanted.seed \
                or split.synthetic_query != synthetic_query:
            raise EvaluationError(f"split '{split.name}' was built with other settings ({split.query}, seed {split.seed}, {stored}); "
                                  "resume with the grid's original options or choose another experiment name")
    expected = config.to_dict()
    for evaluation in evaluations:
        used = {key: value for key, value in evaluation.config.items() if key in expected}
        if evaluation.status == "done" and used != expected:
            raise EvaluationError(f"evaluation {evaluation.id} of experiment '{spec.name}' used other classifier settings ({used}); "
                                  "resume with the original options or choose another experiment name")


def _finished_cell(catalog: Catalog, spec: GridSpec, real: int, synthetic: int) -> GridCell | None:
    """Return a cell of a resumed grid that already has a finished evaluation, or None."""
    name = spec.cell_name(real, synthetic)
    with catalog.session() as session:
        row = session.scalars(
            select(Evaluation).join(Split, Split.id == Evaluation.split_id)
            .where(Split.name == name, Evaluation.experiment == spec.name, Evaluation.status == "done").order_by(Evaluation.id.desc())
        ).first()
    if row is None:
        return None
    return GridCell(real, synthetic, name, "done", row.id, row.metrics.get("summary", {}))


def _split_exists(catalog: Catalog, name: str) -> bool:
    with catalog.session() as session:
        return session.scalar(select(Split.id).where(Split.name == name)) is not None


def run_grid(
    catalog: Catalog,
    settings: Settings,
    spec: GridSpec,
    config: EvalConfig,
    output_dir: Path | None = None,
    on_cell: Callable[[GridCell], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_run: Callable[[dict], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    resume: bool = False,
) -> GridReport:
    """Build and evaluate one split per grid cell, record each as an evaluation of the experiment, and tabulate them.

    A cell whose split cannot be built (too few real or eligible synthetic images) is reported
    with the reason and not evaluated. A stop request ends the grid after the current run, and
    the cells not reached are reported as skipped. With ``resume``, cells that already have a
    finished evaluation are taken as they are and the others are built or evaluated again.
    """
    check_grid(catalog, spec, config, resume)
    check_weights(config)
    seeds = list(range(spec.seeds))
    cells: list[GridCell] = []
    stopped = False
    for real in spec.real_sizes:
        for synthetic in spec.synthetic_sizes:
            name = spec.cell_name(real, synthetic)
            finished = _finished_cell(catalog, spec, real, synthetic) if resume else None
            if finished is not None:
                cells.append(finished)
                continue
            if stopped:
                cells.append(GridCell(real, synthetic, name, "skipped", reason="the grid was stopped"))
                continue
            try:
                if not (resume and _split_exists(catalog, name)):
                    create_split(catalog, spec.split_spec(real, synthetic))
            except SplitError as error:
                cell = GridCell(real, synthetic, name, "not filled", reason=str(error))
            else:
                outcome = evaluate_split(catalog, settings, name, config, seeds, positive=spec.positive, experiment=spec.name,
                                         on_epoch=on_epoch, on_run=on_run, stop_requested=stop_requested)
                cell = GridCell(real, synthetic, name, outcome.status, outcome.evaluation_id, outcome.metrics.get("summary", {}))
                stopped = outcome.status == "cancelled"
            cells.append(cell)
            if on_cell is not None:
                on_cell(cell)

    folder = Path(output_dir) if output_dir is not None else settings.reports_dir / f"experiment-{spec.name}"
    return write_grid_outputs(cells, spec, folder)


def write_grid_outputs(cells: list[GridCell], spec: GridSpec, folder: Path) -> GridReport:
    """Write ``grid.csv``, ``grid.md`` and ``grid.png`` for a grid; cells that were not run are listed with their reason."""
    import csv
    import io

    from evaluation.report import grid_table, plot_grid

    from curator.query import parse

    folder.mkdir(parents=True, exist_ok=True)
    done = [cell for cell in cells if cell.status == "done" and cell.summary.get("accuracy")]
    rows = [{"real": cell.real, "synthetic": cell.synthetic, "method": spec.method, "summary": cell.summary} for cell in done]
    csv_text, markdown = grid_table(rows) if rows else ("real,synthetic,method,runs\n", "")

    # Add what the library's table cannot know: the split and evaluation of each cell, and why a cell was not run.
    by_size = {(cell.real, cell.synthetic): cell for cell in cells}
    reader = list(csv.reader(io.StringIO(csv_text)))
    header, body = reader[0], reader[1:]
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow([*header, "status", "split", "evaluation_id", "reason"])
    for row in body:
        cell = by_size[(int(row[0]), int(row[1]))]
        writer.writerow([*row, cell.status, cell.split, cell.evaluation_id, ""])
    for cell in cells:
        if cell not in done:
            blanks = [""] * (len(header) - 4)
            writer.writerow([cell.real, cell.synthetic, spec.method, 0, *blanks, cell.status, cell.split, cell.evaluation_id or "", cell.reason or ""])

    lines = [f"# Experiment {spec.name}", "",
             f"Real images: `{parse(spec.query)}`; synthetic images: `{spec.synthetic_query()}`; sizes are images per class; "
             f"{spec.seeds} seeds per cell; test fraction {spec.test_fraction}, validation fraction {spec.val_fraction}, split seed {spec.split_seed}.",
             ""]
    lines.append(markdown if markdown else "No cell could be evaluated.\n")
    missing = [cell for cell in cells if cell not in done]
    if missing:
        lines.append("Cells not evaluated:\n")
        lines.extend(f"- real {cell.real} + synthetic {cell.synthetic}: {cell.status}; {cell.reason or 'no metrics'}" for cell in missing)
        lines.append("")

    csv_path = folder / "grid.csv"
    markdown_path = folder / "grid.md"
    plot_path = folder / "grid.png"
    csv_path.write_text(output.getvalue(), encoding="utf-8")
    markdown_path.write_text("\n".join(lines), encoding="utf-8")
    if rows:
        plot_grid(rows, plot_path)
    else:
        plot_path.unlink(missing_ok=True)
    log.info("grid %s: %d of %d cells evaluated; tables in %s", spec.name, len(done), len(cells), folder)
    return GridReport(cells, csv_path, markdown_path, plot_path)
