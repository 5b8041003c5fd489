"""Tests of repeated-seed runs and of the real-versus-synthetic realism split."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from evaluation import runs
from evaluation.classifier import EvalConfig
from evaluation.datasets import SplitArrays
from evaluation.realism import evaluate_realism, realism_data

CONFIG = EvalConfig(image_size=64, weights="none", alpha=0.35, epochs=1)


def small_split() -> SplitArrays:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 64, 64), dtype=np.uint8)
    labels = np.array([0, 1] * 5)
    return SplitArrays(images[:6], labels[:6], images[6:8], labels[6:8], images[8:], labels[8:])


def fake_trainer(accuracy_by_seed: dict[int, float], stop_on_seed: int | None = None):
    """Return a stand-in for train_and_evaluate whose accuracy depends on the seed only."""

    def train(train_x, train_y, val_x, val_y, test_x, test_y, config, seed, on_epoch=None,
              stop_requested=None) -> dict:
        if on_epoch is not None:
            on_epoch({"epoch": 1, "epochs": config.epochs, "phase": "full", "loss": 0.5})
        accuracy = accuracy_by_seed[seed]
        return {
            "metrics": {
                "accuracy": accuracy,
                "roc_auc": accuracy + 0.05,
                "sensitivity": accuracy - 0.1,
                "specificity": float("nan") if seed == 3 else accuracy + 0.1,
            },
            "history": {"loss": [0.5], "val_loss": [0.6], "accuracy": [accuracy]},
            "epochs_run": 1,
            "best_epoch": 1,
            "seconds": 0.1,
            "scores": [0.2, 0.8],
            "counts": {"test": 2},
            "stop_requested": seed == stop_on_seed,
        }

    return train


def test_evaluate_seeds_summarises_with_t_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    accuracies = {1: 0.70, 2: 0.76, 3: 0.73}
    monkeypatch.setattr(runs, "train_and_evaluate", fake_trainer(accuracies))
    run_reports: list[dict] = []
    epoch_reports: list[dict] = []

    result = runs.evaluate_seeds(
        small_split(), CONFIG, [1, 2, 3], on_run=run_reports.append, on_epoch=epoch_reports.append
    )

    values = list(accuracies.values())
    low, high = stats.t.interval(0.95, df=2, loc=np.mean(values), scale=stats.sem(values))
    summary = result["summary"]
    assert summary["accuracy"]["mean"] == pytest.approx(0.73)
    assert summary["accuracy"]["low"] == pytest.approx(low)
    assert summary["accuracy"]["high"] == pytest.approx(high)
    assert summary["roc_auc"]["mean"] == pytest.approx(0.78)
    assert summary["sensitivity"]["mean"] == pytest.approx(0.63)
    # Seed 3 has an undefined specificity, which the summary leaves out.
    assert summary["specificity"]["n"] == 2
    assert summary["specificity"]["mean"] == pytest.approx(0.83)
    assert [run["seed"] for run in result["runs"]] == [1, 2, 3]
    assert [report["run"] for report in run_reports] == [1, 2, 3]
    assert all(report["runs"] == 3 for report in run_reports)
    assert [(report["run"], report["seed"]) for report in epoch_reports] == [(1, 1), (2, 2), (3, 3)]
    assert result["stopped"] is False
    assert result["config"] == CONFIG.to_dict()


def test_evaluate_seeds_stops_after_cut_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "train_and_evaluate", fake_trainer({5: 0.6, 6: 0.7, 7: 0.8}, 6))

    result = runs.evaluate_seeds(small_split(), CONFIG, [5, 6, 7], stop_requested=lambda: False)

    assert [run["seed"] for run in result["runs"]] == [5, 6]
    assert result["stopped"] is True
    assert result["summary"]["accuracy"]["n"] == 2


def test_evaluate_seeds_accepts_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "train_and_evaluate", fake_trainer({4: 0.9}))
    split = small_split()
    mapping = {name: getattr(split, name) for name in
               ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}

    result = runs.evaluate_seeds(mapping, CONFIG, [4])

    assert result["summary"]["accuracy"]["mean"] == pytest.approx(0.9)
    assert np.isnan(result["summary"]["accuracy"]["low"])


@pytest.mark.parametrize(("seeds", "message"), [([], "at least one seed"), ([1, 1], "distinct")])
def test_evaluate_seeds_rejects_bad_seeds(seeds: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runs.evaluate_seeds(small_split(), CONFIG, seeds)


def test_split_arrays_rejects_mismatched_labels() -> None:
    images = np.zeros((3, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="train part has 3 images but 2 labels"):
        SplitArrays(images, [0, 1], images, [0, 1, 0], images, [0, 1, 0])


def test_realism_data_keeps_ratio_and_labels() -> None:
    real = np.full((20, 16, 16), 10, dtype=np.uint8)
    synthetic = np.full((10, 16, 16), 200, dtype=np.uint8)
    real[:, 0, 0] = np.arange(20)
    synthetic[:, 0, 0] = np.arange(100, 110)

    splits = realism_data(real, synthetic, test_fraction=0.2, seed=3, val_fraction=0.1)

    counts = splits.counts()
    assert counts["test"] == {"total": 6, "0": 4, "1": 2}
    assert counts["val"] == {"total": 3, "0": 2, "1": 1}
    assert counts["train"] == {"total": 21, "0": 14, "1": 7}
    for part in ("train", "val", "test"):
        images = getattr(splits, f"{part}_x")
        labels = getattr(splits, f"{part}_y")
        # Synthetic images are the bright ones, so pixels reveal any wrong label.
        assert np.array_equal(labels, (images[:, 5, 5] == 200).astype(int))
    markers = np.concatenate([splits.train_x[:, 0, 0], splits.val_x[:, 0, 0], splits.test_x[:, 0, 0]])
    assert sorted(markers.tolist()) == list(range(20)) + list(range(100, 110))


def test_realism_data_same_seed_same_split() -> None:
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (12, 16, 16), dtype=np.uint8)
    synthetic = rng.integers(0, 256, (12, 16, 16), dtype=np.uint8)

    first = realism_data(real, synthetic, 0.25, seed=9)
    second = realism_data(real, synthetic, 0.25, seed=9)
    other = realism_data(real, synthetic, 0.25, seed=10)

    assert np.array_equal(first.test_x, second.test_x)
    assert not np.array_equal(first.test_x, other.test_x)


@pytest.mark.parametrize(
    ("real_shape", "synthetic_shape", "test_fraction", "message"),
    [
        ((4, 16, 16), (4, 32, 32), 0.25, "resize both"),
        ((4, 16, 16), (4, 16, 16), 1.0, "test_fraction"),
        ((1, 16, 16), (4, 16, 16), 0.25, "at least 2 real"),
        ((3, 16, 16), (8, 16, 16), 0.5, "3 real images are too few"),
    ],
)
def test_realism_data_rejects_bad_input(
    real_shape: tuple, synthetic_shape: tuple, test_fraction: float, message: str
) -> None:
    real = np.zeros(real_shape, np.uint8)
    synthetic = np.zeros(synthetic_shape, np.uint8)
    with pytest.raises(ValueError, match=message):
        realism_data(real, synthetic, test_fraction, seed=0, val_fraction=0.25)


@pytest.mark.slow
def test_evaluate_realism_separates_noise_from_smooth_images() -> None:
    rng = np.random.default_rng(4)
    # Smooth gradients play "real" and white noise plays "synthetic": an easy
    # task, so the test only checks the plumbing and the label meaning.
    gradient = np.linspace(0, 255, 64, dtype=np.float64)
    real = np.stack([
        np.clip(np.add.outer(gradient, gradient) / 2 + rng.normal(0, 5, (64, 64)), 0, 255)
        for _ in range(16)
    ]).astype(np.uint8)
    synthetic = rng.integers(0, 256, size=(16, 64, 64), dtype=np.uint8)
    config = EvalConfig(image_size=64, weights="none", alpha=0.35, epochs=2, batch_size=8,
                        run_eagerly=True)

    result = evaluate_realism(real, synthetic, config, seed=0, test_fraction=0.25, val_fraction=0.125)

    assert result["labels"] == {"0": "real", "1": "synthetic"}
    assert result["split_counts"]["test"] == {"total": 8, "0": 4, "1": 4}
    assert result["metrics"]["n"] == 8
    assert sum(map(sum, result["metrics"]["confusion_matrix"])) == 8
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
