"""Train, validation and test arrays handed to the classifier as one value.

The catalog builds them from a stored split, and the realism check from real
and synthetic images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

PART_NAMES = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class SplitArrays:
    """uint8 grayscale images (N, H, W) with their 0/1 labels for each part of a split."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    def __post_init__(self) -> None:
        for part in PART_NAMES:
            images = getattr(self, f"{part}_x")
            labels = getattr(self, f"{part}_y")
            if len(images) != len(labels):
                raise ValueError(f"{part} part has {len(images)} images but {len(labels)} labels")

    @classmethod
    def from_mapping(cls, values: Mapping[str, np.ndarray]) -> SplitArrays:
        """Build from a mapping with the keys train_x, train_y, val_x, val_y, test_x, test_y."""
        names = [field.name for field in dataclasses.fields(cls)]
        missing = [name for name in names if name not in values]
        if missing:
            raise ValueError(f"split arrays are missing {', '.join(missing)}")
        return cls(**{name: values[name] for name in names})

    def counts(self) -> dict[str, dict[str, int]]:
        """Count the images of each label in each part, for logs and reports."""
        result = {}
        for part in PART_NAMES:
            labels = np.asarray(getattr(self, f"{part}_y")).astype(np.int64)
            per_label = np.bincount(labels, minlength=2) if labels.size else np.zeros(2, np.int64)
            result[part] = {"total": int(labels.size), "0": int(per_label[0]), "1": int(per_label[1])}
        return result
