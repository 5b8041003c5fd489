"""The end-to-end augmentation study: import, detect, split, train generators, generate, evaluate,
check realism and memorisation, and write a report, with every stage recorded as a job.

Each stage has a job key made of the study's tag (data folder and preset), the stage name and
its parameters. A stage whose key already has a finished job is skipped, so an interrupted study
resumes where it stopped and a second run of a finished one does no work. Generators are trained
on the training side of the study's patient split only, so their outputs pass the leakage guard
and the test images never reach a generator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from curator.db import Catalog, CatalogError
from curator.jobs import JobRecorder, finished_job
from curator.models import Generator, Image, Split
from curator.query import parse
from curator.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyPreset:
    """Sizes of one study run; ``small`` fits two CPU cores, ``study`` follows the reference study on a GPU."""

    name: str
    glow_preset: str
    glow_overrides: dict[str, Any]
    epochs: int
    image_size: int
    seeds: int
    batch_size: int
    synthetic_per_class: int | None
    test_fraction: float = 0.25
    val_fraction: float = 0.2
    min_images_per_view: int = 300
    interpolation_steps: int = 4
    ball_radius: float = 2.0
    temperature: float = 0.7
    manipulation_strength: float = 1.0
    realism_count: int | None = 200
    alpha: float = 1.0
    # Eager Keras skips the graph tracing that dominates very short runs (tests); slower per step.
    run_eagerly: bool = False

    def with_changes(self, **changes: Any) -> StudyPreset:
        """Return a copy with some values changed."""
        return dataclasses.replace(self, **changes)


STUDY_PRESETS = {
    # Two CPU cores: a few hundred flow steps per generator and a short classifier schedule.
    "small": StudyPreset(
        name="small", glow_preset="small", glow_overrides={"steps": 400, "checkpoint_every": 200},
        epochs=12, image_size=64, seeds=3, batch_size=16, synthetic_per_class=None, min_images_per_view=200,
    ),
    # The reference study's settings: 128x128, L=5, K=14 flows, one per view type when data allows.
    "study": StudyPreset(
        name="study", glow_preset="study", glow_overrides={}, epochs=30, image_size=128, seeds=5, batch_size=32,
        synthetic_per_class=None, min_images_per_view=300, realism_count=700,
    ),
}


@dataclass
class StudyOptions:
    """The options of one study run: data folder, preset, labels and classifier weights."""

    data_dir: Path
    preset: StudyPreset
    kind: str | None = None
    labels: tuple[str, ...] = ("normal", "cancer")
    clean: bool = False
    weights: str = "imagenet"
    seed: int = 0
    out_dir: Path | None = None
    device: str | None = None


@dataclass
class StudyResult:
    """Outcome of a study run: the report path, the stages run and skipped, and the caveats."""

    report: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)


def detect_kind(data_dir: Path) -> str:
    """Guess the dataset kind of a folder: mias, mini-ddsm, folder (with manifest) or dicom."""
    if (data_dir / "Info.txt").exists() and any(data_dir.glob("*.pgm")):
        return "mias"
    names = {child.name.lower() for child in data_dir.iterdir() if child.is_dir()} if data_dir.is_dir() else set()
    if names & {"normal", "benign", "cancer"} and any(data_dir.rglob("*_1.*_*.jpg")) or any(data_dir.rglob("*_1.*_*.png")):
        return "mini-ddsm"
    if (data_dir / "manifest.csv").exists():
        return "folder"
    if any(path.suffix.lower() in (".dcm", ".dicom") for path in data_dir.rglob("*")):
        return "dicom"
    if names & {"normal", "benign", "cancer"}:
        return "folder"
    raise CatalogError(f"cannot tell the dataset kind of {data_dir}; pass --kind mini-ddsm, mias, folder or dicom")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:10]


class Study:
    """One study run over a catalog; ``run()`` executes or skips each stage in order."""

    def __init__(self, catalog: Catalog, settings: Settings, options: StudyOptions, on_stage: Callable[[str, str], None] | None = None,
                 on_progress: Callable[[str, float, float | None], None] | None = None) -> None:
        self.catalog = catalog
        self.settings = settings
        self.options = options
        self.preset = options.preset
        self.on_stage = on_stage or (lambda stage, state: None)
        self.on_progress = on_progress or (lambda stage, done, total: None)
        self.data_dir = options.data_dir.resolve()
        if options.kind is not None and options.kind not in ("mini-ddsm", "mias", "folder", "dicom"):
            raise CatalogError(f"unknown dataset kind {options.kind!r}; choose mini-ddsm, mias, folder or dicom")
        self.kind = options.kind or detect_kind(self.data_dir)
        self.tag = _digest({"data": str(self.data_dir), "preset": dataclasses.asdict(self.preset), "labels": options.labels, "seed": options.seed, "kind": self.kind})[:8]
        self.result = StudyResult(report=self.out_dir / "report.md")
        self.base_words = f"dataset:{self.kind}"
        self.label_words = " ".join(options.labels)

    @property
    def out_dir(self) -> Path:
        """Folder of the report and its pictures."""
        return (self.options.out_dir or self.settings.reports_dir / f"study-{self.tag}").resolve()

    def stage(self, name: str, params: dict[str, Any], work: Callable[[JobRecorder], dict[str, Any]]) -> dict[str, Any]:
        """Run a stage once: skip it when a finished job has its key, else record it as a job."""
        key = f"study:{self.tag}:{name}:{_digest(params)}"
        done = finished_job(self.catalog, key)
        if done is not None:
            self.result.skipped.append(name)
            self.on_stage(name, "skipped")
            return dict(done.result or {})
        self.on_stage(name, "running")
        with JobRecorder(self.catalog, f"study-{name.split(':')[0]}", {"study": self.tag, **params}, key=key) as job:
            result = work(job)
            job.result = _json_ready(result)
        self.result.ran.append(name)
        self.on_stage(name, "done")
        return job.result

    # Stages -------------------------------------------------------------------------------

    def import_data(self) -> dict[str, Any]:
        from curator.importing import run_import
        from curator.sources import discover_dicom, discover_folder, discover_mias, discover_mini_ddsm

        discover = {"mini-ddsm": discover_mini_ddsm, "mias": discover_mias, "folder": discover_folder, "dicom": discover_dicom}[self.kind]

        def work(job: JobRecorder) -> dict[str, Any]:
            report = run_import(self.catalog, self.settings, discover(self.data_dir), on_progress=lambda done, total: self._progress(job, "import", done, total))
            for line in report.failures:
                job.log(line)
            return report.to_dict()

        return self.stage("import", {"data": str(self.data_dir), "kind": self.kind}, work)

    def detect(self) -> dict[str, Any]:
        from curator.detection import detect_markings_in_catalog

        def work(job: JobRecorder) -> dict[str, Any]:
            summary = detect_markings_in_catalog(self.catalog, parse(self.base_words), on_progress=lambda done, total: self._progress(job, "detect", done, total))
            return {"run_id": summary.run_id, "examined": summary.examined, "flagged": summary.flagged, "failed": len(summary.failures)}

        return self.stage("detect", {"query": self.base_words}, work)

    def clean(self) -> dict[str, Any]:
        from curator.cleaning import clean_images, contact_sheet_for_query

        def work(job: JobRecorder) -> dict[str, Any]:
            summary = clean_images(self.catalog, self.settings, parse(f"{self.base_words} marked original"))
            sheet = None
            if summary.pairs:
                ids = [f"id:{parent}" for parent, _ in summary.pairs][:24]
                sheet, _ = contact_sheet_for_query(self.catalog, self.settings, parse(ids), self.out_dir / "cleaned.png")
            return {"created": len(summary.created), "existing": len(summary.existing), "sheet": str(sheet) if sheet else None}

        return self.stage("clean", {"query": self.base_words}, work)

    def bias(self) -> dict[str, Any]:
        from curator.bias import bias_report, plot_bias

        def work(job: JobRecorder) -> dict[str, Any]:
            report = bias_report(self.catalog, parse(f"{self.base_words} original"))
            report["chart"] = str(plot_bias(report, self.out_dir / "bias.png"))
            report.pop("marked_ids", None)
            return report

        return self.stage("bias", {"query": self.base_words}, work)

    @property
    def split_name(self) -> str:
        """Name of the study's patient split (and prefix of its augmented variants)."""
        return f"study-{self.tag}"

    def split_spec(self, suffix: str = "", synthetic_query: str | None = None):
        """Return the split spec of the baseline (no suffix) or of an augmented arm."""
        from curator.splits import SplitSpec

        return SplitSpec(
            name=self.split_name + (f"-{suffix}" if suffix else ""), query=f"{self.base_words} {self.label_words} original",
            test_fraction=self.preset.test_fraction, val_fraction=self.preset.val_fraction, seed=self.options.seed,
            synthetic_query=synthetic_query, synthetic_per_class=self._synthetic_per_class() if synthetic_query else None,
        )

    def split(self) -> dict[str, Any]:
        from curator.splits import create_split_with_plan, split_summary

        def work(job: JobRecorder) -> dict[str, Any]:
            with self.catalog.session() as session:
                exists = session.scalar(select(Split.id).where(Split.name == self.split_name)) is not None
            if not exists:
                create_split_with_plan(self.catalog, self.split_spec())
            return split_summary(self.catalog, self.split_name)

        return self.stage("split", {"name": self.split_name}, work)

    def _train_counts(self) -> dict[tuple[str, str], int]:
        with self.catalog.session() as session:
            rows = session.execute(
                select(Image.label, Image.view, func.count(Image.id)).where(parse(f"split:{self.split_name}:train").where()).group_by(Image.label, Image.view)
            ).all()
        return {(label, view): count for label, view, count in rows}

    def _synthetic_per_class(self) -> int:
        if self.preset.synthetic_per_class is not None:
            return self.preset.synthetic_per_class
        counts: dict[str, int] = {}
        for (label, _), count in self._train_counts().items():
            counts[label] = counts.get(label, 0) + count
        # As many generated images as real ones: the reference study's "N real + N generated" rows.
        return max(1, min(counts.values())) if counts else 1

    def generator_plan(self) -> list[tuple[str, str]]:
        """Return (generator name, training query) pairs: one per label, per view when data allows, plus one for manipulation."""
        counts = self._train_counts()
        plan = []
        for label in self.options.labels:
            views = {view: count for (each, view), count in counts.items() if each == label}
            if views and all(count >= self.preset.min_images_per_view for count in views.values()) and len(views) > 1:
                for view in sorted(views):
                    plan.append((f"{self.split_name}-{label}-{view.lower()}", f"split:{self.split_name}:train {label} {view}"))
            else:
                plan.append((f"{self.split_name}-{label}", f"split:{self.split_name}:train {label}"))
        # Manipulation needs both groups in one latent space, so it uses a flow trained on all labels.
        plan.append((f"{self.split_name}-all", f"split:{self.split_name}:train"))
        return plan

    def train_generators(self) -> dict[str, Any]:
        from curator.generation import train_generator

        results = {}
        overrides = dict(self.preset.glow_overrides)
        overrides.setdefault("seed", self.options.seed)
        for name, words in self.generator_plan():
            def work(job: JobRecorder, name: str = name, words: str = words) -> dict[str, Any]:
                with self.catalog.session() as session:
                    existing = session.scalars(select(Generator).where(Generator.name == name)).first()
                outcome = train_generator(
                    self.catalog, self.settings, parse(words), name, preset=self.preset.glow_preset, overrides=overrides,
                    resume=existing is not None, device=self.options.device,
                    on_progress=lambda event: self._progress(job, f"train {name}", event.step, event.total),
                )
                return {"generator_id": outcome.generator_id, "initial": outcome.initial_bits_per_dim, "final": outcome.final_bits_per_dim,
                        "train": outcome.train_count, "heldout": outcome.heldout_count, "grid": str(outcome.sample_grids[-1]) if outcome.sample_grids else None}

            results[name] = self.stage(f"train:{name}", {"name": name, "query": words, "preset": self.preset.glow_preset, "overrides": overrides}, work)
        return results

    def generate(self) -> dict[str, Any]:
        import random

        from curator.generation import generate_ball, generate_interpolations, generate_manipulations, generate_samples, selected_images

        per_class = self._synthetic_per_class()
        work_size = self._work_size()
        results: dict[str, Any] = {}
        label_models = [(name, words) for name, words in self.generator_plan() if not name.endswith("-all")]
        models_per_label = {label: sum(1 for _, words in label_models if f" {label}" in f" {words} ") for label in self.options.labels}
        for name, words in label_models:
            label = next(label for label in self.options.labels if f" {label}" in f" {words} ")
            # A label with one flow per view splits its share of generated images between them.
            share = max(1, math.ceil(per_class / max(1, models_per_label[label])))
            train_images = selected_images(self.catalog, parse(words))

            def sample_work(job, name=name, share=share):
                outcome = generate_samples(self.catalog, self.settings, name, share, self.preset.temperature, self.options.seed, work_size=work_size, device=self.options.device)
                return {"created": len(outcome.created), "picture": str(outcome.picture)}

            def interpolation_work(job, name=name, share=share, train_images=train_images):
                steps = self.preset.interpolation_steps
                rng = random.Random(self.options.seed)
                pairs = [tuple(rng.sample(train_images, 2)) for _ in range(math.ceil(share / steps))] if len(train_images) >= 2 else []
                if not pairs:
                    return {"created": 0, "note": "fewer than two training images"}
                outcome = generate_interpolations(self.catalog, self.settings, name, pairs, steps, spherical=False, work_size=work_size, device=self.options.device)
                return {"created": len(outcome.created), "picture": str(outcome.picture)}

            def ball_work(job, name=name, share=share, train_images=train_images):
                outcome = generate_ball(self.catalog, self.settings, name, train_images, self.preset.ball_radius, share, self.options.seed, work_size=work_size, device=self.options.device)
                return {"created": len(outcome.created), "picture": str(outcome.picture)}

            for method, work in (("sample", sample_work), ("interpolation", interpolation_work), ("ball", ball_work)):
                results[f"{method}:{name}"] = self.stage(f"generate-{method}:{name}", {"model": name, "count": share, "seed": self.options.seed}, work)

        all_model = f"{self.split_name}-all"
        train_words = f"split:{self.split_name}:train"
        labels = list(self.options.labels)
        for source_label in labels:
            for target_label in labels:
                if source_label == target_label:
                    continue

                def transfer_work(job, source_label=source_label, target_label=target_label):
                    images = selected_images(self.catalog, parse(f"{train_words} {source_label}"))[:per_class]
                    outcome = generate_manipulations(
                        self.catalog, self.settings, all_model, images, selected_images(self.catalog, parse(f"{train_words} {source_label}")),
                        selected_images(self.catalog, parse(f"{train_words} {target_label}")), self.preset.manipulation_strength,
                        parse(f"{train_words} {source_label}"), parse(f"{train_words} {target_label}"), work_size=work_size, device=self.options.device,
                    )
                    return {"created": len(outcome.created), "picture": str(outcome.picture)}

                results[f"manipulation:{source_label}->{target_label}"] = self.stage(
                    f"generate-manipulation:{source_label}-{target_label}", {"model": all_model, "count": per_class}, transfer_work
                )

        marked = selected_images(self.catalog, parse(f"{train_words} marked"))
        unmarked_same = [image for image in selected_images(self.catalog, parse(f"{train_words} unmarked")) if image.label in {m.label for m in marked}]
        if len(marked) >= 2 and len(unmarked_same) >= 2:
            def demark_work(job):
                outcome = generate_manipulations(
                    self.catalog, self.settings, all_model, marked, marked, unmarked_same, self.preset.manipulation_strength,
                    parse(f"{train_words} marked"), parse(f"{train_words} unmarked"), work_size=work_size, device=self.options.device,
                )
                return {"created": len(outcome.created), "picture": str(outcome.picture)}

            results["manipulation:marked->unmarked"] = self.stage("generate-manipulation:demark", {"model": all_model}, demark_work)
        return results

    def _work_size(self) -> int:
        with self.catalog.session() as session:
            image = session.scalars(select(Image).where(parse(f"split:{self.split_name}").where()).limit(1)).first()
        return int((image.extra or {}).get("work_size", 128)) if image else 128

    def arms(self) -> list[tuple[str, str | None]]:
        """Return the evaluated training sets: (arm name, synthetic query or None for the baseline)."""
        models = " ".join(f"model:{name}" for name, _ in self.generator_plan() if not name.endswith("-all"))
        all_model = f"model:{self.split_name}-all"
        arms: list[tuple[str, str | None]] = [("baseline", None)]
        arms.append(("sample", f"synthetic sampled {models}"))
        arms.append(("interpolation", f"synthetic interpolated {models}"))
        arms.append(("ball", f"synthetic ball {models}"))
        arms.append(("manipulation", f"synthetic manipulated {all_model}"))
        if self.options.clean:
            arms.append(("cleaned", "derived cleaned"))
        return arms

    def evaluation_config(self):
        from evaluation.classifier import EvalConfig

        return EvalConfig(image_size=self.preset.image_size, weights=self.weights, epochs=self.preset.epochs, batch_size=self.preset.batch_size, alpha=self.preset.alpha,
                          run_eagerly=self.preset.run_eagerly)

    @property
    def weights(self) -> str:
        """Classifier weights actually used: the requested ones, or none when ImageNet weights are unavailable."""
        if not hasattr(self, "_weights"):
            from evaluation.classifier import EvalConfig, WeightsUnavailableError

            from curator.evaluate import check_weights

            requested = self.options.weights
            try:
                check_weights(EvalConfig(image_size=self.preset.image_size, weights=requested, alpha=self.preset.alpha))
                self._weights = requested
            except WeightsUnavailableError as error:
                if requested != "imagenet":
                    raise CatalogError(str(error)) from error
                self._weights = "none"
                self.result.caveats.append(
                    f"ImageNet weights could not be loaded ({str(error).splitlines()[0]}); every classifier was trained from random "
                    "initialisation, so accuracies are far below what transfer learning reaches."
                )
        return self._weights

    def evaluate(self) -> dict[str, Any]:
        from curator.evaluate import evaluate_split
        from curator.splits import SplitError, create_split_with_plan

        seeds = list(range(self.options.seed, self.options.seed + self.preset.seeds))
        results: dict[str, Any] = {}
        config = self.evaluation_config()
        for arm, synthetic_query in self.arms():
            spec = self.split_spec("" if arm == "baseline" else arm, synthetic_query)

            def work(job, spec=spec, arm=arm):
                with self.catalog.session() as session:
                    exists = session.scalar(select(Split.id).where(Split.name == spec.name)) is not None
                plan = None
                if not exists:
                    try:
                        _, plan = create_split_with_plan(self.catalog, spec)
                    except SplitError as error:
                        return {"status": "not run", "reason": str(error)}
                runs = {"done": 0}

                def on_run(info):
                    runs["done"] += 1
                    self._progress(job, f"evaluate {arm}", runs["done"], len(seeds))

                outcome = evaluate_split(self.catalog, self.settings, spec.name, config, seeds, on_run=on_run, experiment=f"study-{self.tag}")
                return {"status": outcome.status, "evaluation_id": outcome.evaluation_id, "split": spec.name,
                        "summary": outcome.metrics.get("summary", {}), "counts": outcome.metrics.get("counts", {}),
                        "excluded": plan.exclusion_counts() if plan else None}

            results[arm] = self.stage(f"evaluate:{arm}", {"split": spec.name, "config": config.to_dict(), "seeds": seeds}, work)
        return results

    def checks(self) -> dict[str, Any]:
        from curator.evaluate import EvaluationError, evaluate_memorisation, evaluate_realism

        results: dict[str, Any] = {}
        config = self.evaluation_config()
        seeds = list(range(self.options.seed, self.options.seed + self.preset.seeds))
        for name, _ in self.generator_plan():
            if name.endswith("-all"):
                continue

            def realism_work(job, name=name):
                try:
                    outcome = evaluate_realism(self.catalog, self.settings, name, config, seeds, count=self.preset.realism_count, split_seed=self.options.seed)
                except EvaluationError as error:
                    return {"status": "not run", "reason": str(error)}
                return {"status": outcome.status, "evaluation_id": outcome.evaluation_id, "summary": outcome.metrics.get("summary", {}), "counts": outcome.metrics.get("counts", {})}

            def memorisation_work(job, name=name):
                try:
                    outcome = evaluate_memorisation(self.catalog, self.settings, name, output_dir=self.out_dir)
                except EvaluationError as error:
                    return {"status": "not run", "reason": str(error)}
                metrics = outcome.metrics
                return {"status": outcome.status, "evaluation_id": outcome.evaluation_id, "near_copies": metrics.get("near_copies"),
                        "synthetic": metrics.get("synthetic"), "ssim": metrics.get("ssim"), "threshold": metrics.get("near_copy_ssim"), "plot": metrics.get("plot")}

            results[f"realism:{name}"] = self.stage(f"realism:{name}", {"model": name, "config": config.to_dict(), "seeds": seeds}, realism_work)
            results[f"memorisation:{name}"] = self.stage(f"memorisation:{name}", {"model": name}, memorisation_work)
        return results

    def _progress(self, job: JobRecorder, stage: str, done: float, total: float | None) -> None:
        job.progress(done, total, stage)
        self.on_progress(stage, done, total)

    # The whole run ---------------------------------------------------------------------

    def run(self) -> StudyResult:
        """Run (or skip) every stage and write the report."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        sections: dict[str, Any] = {}
        sections["import"] = self.import_data()
        sections["detect"] = self.detect()
        if self.options.clean:
            sections["clean"] = self.clean()
        sections["bias"] = self.bias()
        sections["split"] = self.split()
        sections["generators"] = self.train_generators()
        sections["generation"] = self.generate()
        sections["evaluation"] = self.evaluate()
        sections["checks"] = self.checks()
        from curator.study_report import write_report

        write_report(self, sections)
        return self.result


def _json_ready(value: Any) -> Any:
    from curator.evaluate import json_safe

    return json_safe(json.loads(json.dumps(value, default=str)))



