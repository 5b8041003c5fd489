"""Sample grids written by glow.grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glow.grid import save_grid, tile_images


def test_tile_places_images_row_by_row() -> None:
    images = np.stack([np.full((1, 2, 3), value, np.uint8) for value in (10, 20, 30)])

    sheet = tile_images(images, columns=2, padding=1)

    assert sheet.shape == (2 * 2 + 1, 2 * 3 + 1)
    assert sheet[0, 0] == 10
    assert sheet[0, 4] == 20
    assert sheet[3, 0] == 30
    assert sheet[2, 0] == 0  # padding row
    assert sheet[3, 4] == 0  # empty last cell


def test_save_grid_writes_readable_png(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8), dtype=np.uint8)

    path = save_grid(images, tmp_path / "grid.png", columns=4, padding=2)

    with Image.open(path) as image:
        assert image.mode == "L"
        assert image.size == (4 * 10 - 2, 2 * 10 - 2)
        assert np.array_equal(np.asarray(image)[:8, :8], images[0])


def test_save_grid_rgb(tmp_path: Path) -> None:
    images = np.zeros((2, 3, 4, 4), np.uint8)
    images[:, 0] = 255

    path = save_grid(images, tmp_path / "rgb.png", columns=2)

    with Image.open(path) as image:
        assert image.mode == "RGB"
        assert image.getpixel((0, 0)) == (255, 0, 0)


def test_tile_rejects_float_images() -> None:
    with pytest.raises(ValueError, match="uint8"):
        tile_images(np.zeros((1, 1, 2, 2), np.float32), columns=1)
