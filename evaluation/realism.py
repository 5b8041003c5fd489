"""Realism check: how well a MobileNetV2 separates generated mammograms from real ones.

Label 0 is real and label 1 is synthetic. A test accuracy near 0.5 means the
classifier cannot separate them. For comparison, samples of a Glow model
trained on mini-DDSM at 128 px were separated from real images 94% (normal)
and 96% (cancer) of the time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from evaluation.classifier import EvalConfig, train_and_evaluate
from evaluation.datasets import SplitArrays

REAL_LABEL = 0
SYNTHETIC_LABEL = 1


def realism_data(
    real_uint8: np.ndarray,
    synthetic_uint8: np.ndarray,
    test_fraction: float,
    seed: int,
    val_fraction: float = 0.1,
) -> SplitArrays:
    """Split real (label 0) and synthetic (label 1) images into train, validation and test.

    Each group is shuffled with `seed` and split on its own, so every part
    keeps the ratio of real to synthetic images. Each group puts at least one
    image in test and one in train; `val_fraction=0` gives no validation part.
    """
    real = _check_images(real_uint8, "real")
    synthetic = _check_images(synthetic_uint8, "synthetic")
    if real.shape[1:] != synthetic.shape[1:]:
        raise ValueError(
            f"real images are {real.shape[1:]} but synthetic images are {synthetic.shape[1:]}; "
            "resize both to the working resolution first"
        )
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if not 0.0 <= val_fraction < 1.0 or test_fraction + val_fraction >= 1.0:
        raise ValueError(
            f"val_fraction must be in [0, 1) and leave images for training, got {val_fraction} "
            f"with test_fraction {test_fraction}"
        )

    # NOTE: real images are split one by one, so two views of one patient can
    # fall on different sides. Callers that know patients must split by patient.
    rng = np.random.default_rng(seed)
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "val": [], "test": []}
    for images, label in ((real, REAL_LABEL), (synthetic, SYNTHETIC_LABEL)):
        order = rng.permutation(len(images))
        test_count = max(1, round(len(images) * test_fraction))
        val_count = round(len(images) * val_fraction)
        if test_count + val_count >= len(images):
            raise ValueError(
                f"{len(images)} {_group_name(label)} images are too few for "
                f"test_fraction {test_fraction} and val_fraction {val_fraction}"
            )
        boundaries = {
            "test": order[:test_count],
            "val": order[test_count : test_count + val_count],
            "train": order[test_count + val_count :],
        }
        for part, indices in boundaries.items():
            parts[part].append((images[indices], np.full(len(indices), label, dtype=np.int64)))

    joined = {}
    for part, pieces in parts.items():
        joined[f"{part}_x"] = np.concatenate([images for images, _ in pieces])
        joined[f"{part}_y"] = np.concatenate([labels for _, labels in pieces])
    return SplitArrays(**joined)


def evaluate_realism(
    real_uint8: np.ndarray,
    synthetic_uint8: np.ndarray,
    config: EvalConfig,
    seed: int,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    on_epoch: Callable[[dict], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> dict:
    """Train a real-versus-synthetic classifier and report its test metrics.

    Returns the `train_and_evaluate` result, where sensitivity is the share of
    synthetic test images caught and specificity the share of real ones
    passed, plus `split_counts` and `labels` (what 0 and 1 mean).
    """
    splits = realism_data(real_uint8, synthetic_uint8, test_fraction, seed, val_fraction)
    result = train_and_evaluate(
        splits.train_x,
        splits.train_y,
        splits.val_x,
        splits.val_y,
        splits.test_x,
        splits.test_y,
        config,
        seed,
        on_epoch=on_epoch,
        stop_requested=stop_requested,
    )
    result["split_counts"] = splits.counts()
    result["labels"] = {str(REAL_LABEL): "real", str(SYNTHETIC_LABEL): "synthetic"}
    return result


def _check_images(images: np.ndarray, group: str) -> np.ndarray:
    """Return images as a (N, H, W) uint8 array, raising ValueError on anything else."""
    array = np.asarray(images)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8 or array.ndim != 3:
        raise ValueError(
            f"{group} images must be a uint8 array of shape (N, H, W), "
            f"got {array.dtype} {array.shape}"
        )
    if len(array) < 2:
        raise ValueError(f"at least 2 {group} images are needed (one to train, one to test)")
    return array


def _group_name(label: int) -> str:
    return "real" if label == REAL_LABEL else "synthetic"
