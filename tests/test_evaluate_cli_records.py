"""``curator evaluate``: what is recorded, locked and printed, with the classifier replaced by a
brightness threshold so the catalog side runs in milliseconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from curator.cli import app
from curator.db import Catalog
from curator.evaluate import EvaluationError, choose_classes, json_safe, split_data
from curator.models import Evaluation, Image, Split
from curator.settings import Settings
from curator.splits import SplitSpec, create_split
from test_splits_support import add_generator, add_image, add_patients

runner = CliRunner()


def _invoke(settings: Settings, *arguments: str):
    return runner.invoke(app, ["--db", settings.database_url, "--home", str(settings.home), *arguments])


def brightness_classifier(data, config, seeds, on_run=None, on_epoch=None, stop_requested=None, confidence=0.95):
    """Stand in for ``evaluation.runs.evaluate_seeds``: the score is the mean brightness of each test image."""
    from evaluation.metrics import binary_metrics
    from evaluation.runs import summarise_runs

    runs = []
    for number, seed in enumerate(seeds, start=1):
        for epoch in range(1, config.epochs + 1):
            if on_epoch is not None:
                on_epoch({"epoch": epoch, "epochs": config.epochs, "phase": "full", "loss": 0.5, "accuracy": 0.5,
                          "val_loss": None, "val_accuracy": None, "run": number, "seed": seed})
        scores = data.test_x.reshape(len(data.test_x), -1).mean(axis=1) / 255.0
        metrics = binary_metrics(data.test_y, scores)
        run = {"seed": seed, "metrics": metrics, "history": {"loss": [0.5]}, "epochs_run": config.epochs, "best_epoch": 1,
               "seconds": 0.01, "scores": scores.tolist(), "counts": {"train": int(len(data.train_y))}}
        runs.append(run)
        if on_run is not None:
            on_run({"run": number, "runs": len(seeds), "seed": seed, "result": run})
    return {"runs": runs, "summary": summarise_runs(runs), "seeds": list(seeds), "config": config.to_dict(), "seconds": 0.02, "stopped": False}


@pytest.fixture
def fake_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace training with the brightness threshold and skip importing TensorFlow for versions."""
    monkeypatch.setattr("evaluation.runs.evaluate_seeds", brightness_classifier)
    monkeypatch.setattr("evaluation.classifier.package_versions", lambda: {"tensorflow": "test", "keras": "test", "numpy": np.__version__})


@pytest.fixture
def bright_cancer(catalog: Catalog, settings: Settings) -> tuple[Catalog, Settings]:
    """Normal images around brightness 60 and cancer images around 190, with split 's'."""
    with catalog.transaction() as session:
        add_patients(session, "normal", 5, settings=settings, brightness=60)
        add_patients(session, "cancer", 5, settings=settings, brightness=190)
    create_split(catalog, SplitSpec("s", "normal cancer", test_fraction=0.2, val_fraction=0.25, seed=0))
    return catalog, settings


def _evaluations(catalog: Catalog) -> list[Evaluation]:
    with catalog.session() as session:
        return list(session.scalars(select(Evaluation).order_by(Evaluation.id)))


def test_evaluate_records_metrics_and_locks_split(bright_cancer, fake_classifier) -> None:
    catalog, settings = bright_cancer
    result = _invoke(settings, "evaluate", "s", "--seeds", "2", "--weights", "none", "--epochs", "2", "--image-size", "32")
    assert result.exit_code == 0, result.output
    assert "cancer vs normal" in result.output

    [evaluation] = _evaluations(catalog)
    assert evaluation.status == "done"
    assert evaluation.kind == "classifier"
    assert evaluation.seeds == [0, 1]
    assert evaluation.config["positive"] == "cancer"
    assert evaluation.config["image_size"] == 32
    assert evaluation.versions["tensorflow"] == "test"
    assert evaluation.metrics["summary"]["accuracy"]["mean"] == 1.0
    assert evaluation.metrics["counts"]["test"] == {"total": 8, "positive": 4, "negative": 4}
    assert len(evaluation.metrics["test_ids"]) == 8
    assert [run["seed"] for run in evaluation.metrics["runs"]] == [0, 1]
    assert evaluation.metrics["runs"][0]["metrics"]["confusion_matrix"] == [[4, 0], [0, 4]]
    assert evaluation.seconds is not None
    with catalog.session() as session:
        assert session.scalars(select(Split.locked).where(Split.name == "s")).one() is True

    refused = _invoke(settings, "split", "delete", "s")
    assert refused.exit_code == 1
    assert "locked" in refused.output


def test_positive_choice_flips_labels(bright_cancer, fake_classifier) -> None:
    catalog, settings = bright_cancer
    result = _invoke(settings, "evaluate", "run", "s", "--seeds", "1", "--weights", "none", "--epochs", "1", "--positive", "normal", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)["metrics"]
    # Bright images score high, so with normal as positive every prediction is wrong.
    assert metrics["summary"]["accuracy"]["mean"] == 0.0
    # One run has no interval: the NaN bounds are stored as null.
    assert metrics["summary"]["accuracy"]["low"] is None


def test_three_labels_need_positive(catalog: Catalog, settings: Settings, fake_classifier) -> None:
    with catalog.transaction() as session:
        for label, brightness in (("normal", 60), ("benign", 120), ("cancer", 190)):
            add_patients(session, label, 5, settings=settings, brightness=brightness)
    create_split(catalog, SplitSpec("three", "normal benign cancer", test_fraction=0.2, seed=0))

    refused = _invoke(settings, "evaluate", "three", "--weights", "none", "--epochs", "1")
    assert refused.exit_code == 1
    assert "the split has 3 labels (benign, cancer, normal); pass --positive LABEL" in refused.output
    assert _evaluations(catalog) == []

    accepted = _invoke(settings, "evaluate", "three", "--seeds", "1", "--weights", "none", "--epochs", "1", "--positive", "cancer")
    assert accepted.exit_code == 0, accepted.output
    [evaluation] = _evaluations(catalog)
    assert evaluation.config["negative"] == "rest"
    assert evaluation.metrics["counts"]["test"]["positive"] == 4
    assert evaluation.metrics["counts"]["test"]["negative"] == 8


def test_offline_imagenet_weights_write_nothing(bright_cancer, monkeypatch: pytest.MonkeyPatch) -> None:
    from evaluation.classifier import WeightsUnavailableError

    def offline(alpha: float, image_size: int) -> str:
        raise WeightsUnavailableError("could not download ImageNet weights for MobileNetV2 (no network); pass weights=PATH")

    monkeypatch.setattr("evaluation.classifier.imagenet_weights_file", offline)
    catalog, settings = bright_cancer
    result = _invoke(settings, "evaluate", "s", "--seeds", "1")
    assert result.exit_code == 1
    assert "could not download ImageNet weights" in result.output
    assert "Traceback" not in result.output
    assert _evaluations(catalog) == []
    with catalog.session() as session:
        assert session.scalars(select(Split.locked).where(Split.name == "s")).one() is False


def test_missing_weights_file_is_rejected(bright_cancer, tmp_path) -> None:
    _, settings = bright_cancer
    result = _invoke(settings, "evaluate", "s", "--weights", str(tmp_path / "absent.h5"))
    assert result.exit_code == 1
    assert "weights file not found" in result.output


def test_ctrl_c_cancels_without_metrics(bright_cancer, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(data, config, seeds, on_run=None, on_epoch=None, stop_requested=None, confidence=0.95):
        on_epoch({"epoch": 1, "epochs": config.epochs, "phase": "full", "loss": 0.7, "accuracy": 0.5, "val_loss": None,
                  "val_accuracy": None, "run": 1, "seed": seeds[0]})
        raise KeyboardInterrupt

    monkeypatch.setattr("evaluation.runs.evaluate_seeds", interrupted)
    monkeypatch.setattr("evaluation.classifier.package_versions", lambda: {})
    catalog, settings = bright_cancer
    result = _invoke(settings, "evaluate", "s", "--seeds", "2", "--weights", "none", "--epochs", "3")
    assert result.exit_code == 130
    [evaluation] = _evaluations(catalog)
    assert evaluation.status == "cancelled"
    assert evaluation.metrics == {}
    assert evaluation.seconds is not None


def test_stop_request_marks_evaluation_cancelled(bright_cancer, monkeypatch: pytest.MonkeyPatch) -> None:
    def stopped(data, config, seeds, on_run=None, on_epoch=None, stop_requested=None, confidence=0.95):
        result = brightness_classifier(data, config, seeds[:1])
        return result | {"stopped": True}

    monkeypatch.setattr("evaluation.runs.evaluate_seeds", stopped)
    monkeypatch.setattr("evaluation.classifier.package_versions", lambda: {})
    catalog, settings = bright_cancer
    result = _invoke(settings, "evaluate", "s", "--seeds", "3", "--weights", "none", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "cancelled; no metrics were recorded" in result.output
    [evaluation] = _evaluations(catalog)
    assert evaluation.status == "cancelled"
    assert evaluation.metrics == {}


def test_list_and_show(bright_cancer, fake_classifier) -> None:
    catalog, settings = bright_cancer
    _invoke(settings, "evaluate", "s", "--seeds", "2", "--weights", "none", "--epochs", "1")
    listed = json.loads(_invoke(settings, "evaluate", "list", "--json").output)
    assert [(row["kind"], row["status"], row["split"]) for row in listed] == [("classifier", "done", "s")]
    assert listed[0]["headline"] == "100.00 ± 0.00 %"
    shown = _invoke(settings, "evaluate", "show", str(listed[0]["id"]))
    assert shown.exit_code == 0, shown.output
    assert "accuracy     100.00 ± 0.00 % over 2 runs" in shown.output
    assert "seed 1: accuracy 1.0000" in shown.output
    assert "roc_auc      1.000 ± 0.000 over 2 runs" in shown.output
    missing = _invoke(settings, "evaluate", "show", "999")
    assert missing.exit_code == 1
    assert "evaluation 999 not found" in missing.output


def test_split_data_reads_working_images(bright_cancer) -> None:
    catalog, settings = bright_cancer
    data = split_data(catalog, settings, "s")
    assert data.arrays.train_x.shape[1:] == (16, 16)
    assert data.arrays.train_x.dtype == np.uint8
    brightness = data.arrays.test_x.reshape(len(data.arrays.test_x), -1).mean(axis=1)
    assert np.all(brightness[data.arrays.test_y == 1] > 150)
    assert np.all(brightness[data.arrays.test_y == 0] < 100)
    assert len(data.ids["val"]) == len(data.arrays.val_y) == 8


def test_choose_classes_rules() -> None:
    assert choose_classes(["normal", "cancer", "cancer"], None) == ("cancer", ["normal"])
    assert choose_classes(["normal", "benign", "cancer"], "benign") == ("benign", ["cancer", "normal"])
    with pytest.raises(EvaluationError, match="positive label 'cancer' is not in the split"):
        choose_classes(["normal", "benign"], None)
    with pytest.raises(EvaluationError, match="only 'cancer' images"):
        choose_classes(["cancer"], None)


def test_json_safe_replaces_nan_and_numpy_values() -> None:
    cleaned = json_safe({"a": float("nan"), "b": [np.float32(0.5), np.int64(3)], "c": np.array([1.0, np.inf])})
    assert cleaned == {"a": None, "b": [0.5, 3], "c": [1.0, None]}
    assert type(cleaned["b"][1]) is int


def test_realism_records_kind_and_groups_patients(catalog: Catalog, settings: Settings, fake_classifier) -> None:
    with catalog.transaction() as session:
        training = [image for images in add_patients(session, "cancer", 6, settings=settings, brightness=60).values() for image in images]
        generator = add_generator(session, "glow-cancer", train=training)
        for _ in range(20):
            add_image(session, "cancer", origin="synthetic", method="sample", generator_id=generator, settings=settings, brightness=190)
    result = _invoke(settings, "evaluate", "realism", "--model", "glow-cancer", "--seeds", "1", "--weights", "none", "--epochs", "1", "--json")
    assert result.exit_code == 0, result.output
    [evaluation] = _evaluations(catalog)
    assert evaluation.kind == "realism"
    assert evaluation.generator_id == generator
    assert evaluation.split_id is None
    assert evaluation.metrics["summary"]["accuracy"]["mean"] == 1.0
    # 6 patients: round(6 * 0.2) = 1 tested, round(6 * 0.1) = 1 for validation, 4 patients of 4 images trained on.
    assert evaluation.metrics["counts"] == {"train": {"real": 16, "synthetic": 14}, "val": {"real": 4, "synthetic": 2},
                                            "test": {"real": 4, "synthetic": 4}}


def test_realism_needs_samples(catalog: Catalog, settings: Settings) -> None:
    with catalog.transaction() as session:
        add_generator(session, "empty", train=[add_image(session, "cancer", settings=settings) for _ in range(4)])
    result = _invoke(settings, "evaluate", "realism", "--model", "empty", "--weights", "none")
    assert result.exit_code == 1
    assert "has 4 training images and 0 samples" in result.output
    unknown = _invoke(settings, "evaluate", "realism", "--model", "nope", "--weights", "none")
    assert "model 'nope' not found" in unknown.output


def test_memorisation_flags_exact_copy(sqlite_catalog: Catalog, sqlite_settings: Settings, tmp_path) -> None:
    catalog, settings = sqlite_catalog, sqlite_settings
    with catalog.transaction() as session:
        training = [add_image(session, "normal", settings=settings, work_size=32) for _ in range(6)]
        generator = add_generator(session, "glow-normal", train=training)
        synthetic = [add_image(session, "normal", origin="synthetic", method="sample", generator_id=generator, settings=settings,
                               work_size=32) for _ in range(4)]
        # The third sample is a pixel-for-pixel copy of the fifth training image.
        session.get(Image, synthetic[2]).work_path = session.get(Image, training[4]).work_path
    result = _invoke(settings, "evaluate", "memorisation", "--model", "glow-normal", "--out", str(tmp_path / "plots"))
    assert result.exit_code == 0, result.output
    assert "1 of 4 synthetic images are near copies" in result.output

    [evaluation] = _evaluations(catalog)
    assert evaluation.kind == "memorisation"
    assert evaluation.status == "done"
    closest = evaluation.metrics["closest"][0]
    assert (closest["synthetic_id"], closest["training_id"], closest["near_copy"]) == (synthetic[2], training[4], True)
    assert closest["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert evaluation.metrics["near_copies"] == 1
    assert (tmp_path / "plots" / f"memorisation-{generator}-{evaluation.id}.png").is_file()
