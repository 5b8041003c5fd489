"""Contact sheets: tile a batch of integer images into one PNG for a quick look."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def tile_images(images: np.ndarray, columns: int, padding: int = 2) -> np.ndarray:
    """Tile (N, C, H, W) or (N, H, W) uint8 images into one (rows*H, columns*W[, C]) array.

    Tiles are separated by ``padding`` black pixels. C must be 1 (grayscale) or 3 (RGB).
    """
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, H, W) or (N, C, H, W) with C in (1, 3), got {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {array.dtype}")
    if len(array) == 0:
        raise ValueError("cannot tile an empty batch")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")

    count, channels, height, width = array.shape
    columns = min(columns, count)
    rows = -(-count // columns)
    sheet = np.zeros((channels, rows * (height + padding) - padding, columns * (width + padding) - padding), np.uint8)
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = row * (height + padding), column * (width + padding)
        sheet[:, top : top + height, left : left + width] = array[index]
    return sheet[0] if channels == 1 else sheet.transpose(1, 2, 0)


def save_grid(images: np.ndarray, path: Path | str, columns: int = 8, padding: int = 2) -> Path:
    """Write the tiled images as a PNG at ``path`` (written to a temporary file, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet = tile_images(images, columns, padding)
    temporary = path.with_name(path.name + ".tmp")
    Image.fromarray(sheet).save(temporary, format="PNG")
    os.replace(temporary, path)
    return path
