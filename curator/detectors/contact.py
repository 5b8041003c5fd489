"""Contact sheets for checking detections by eye: films with their boxes, before and after paint-out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

Box = tuple[int, int, int, int]

# Box colour (RGB): a saturated red is visible on grey films and on white paint.
BOX_COLOUR = (255, 40, 40)
_LABEL_HEIGHT = 22
_GAP = 6
_SHEET_BACKGROUND = 48


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise ValueError(f"expected a grayscale or RGB image, got shape {image.shape}")


def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[Box],
    colour: tuple[int, int, int] = BOX_COLOUR,
    thickness: int | None = None,
) -> np.ndarray:
    """Return an RGB copy of `image` with each (x, y, width, height) box outlined.

    The default line width is 0.5 % of the shorter side (at least 2 px), so boxes
    stay visible after the film is shrunk to a thumbnail.
    """
    canvas = _as_rgb(image)
    if thickness is None:
        thickness = max(2, round(min(canvas.shape[:2]) * 0.005))
    for x, y, width, height in boxes:
        cv2.rectangle(canvas, (int(x), int(y)), (int(x + width - 1), int(y + height - 1)), colour, thickness)
    return canvas


def _thumbnail(image: np.ndarray, height: int) -> np.ndarray:
    scale = height / image.shape[0]
    width = max(1, round(image.shape[1] * scale))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _panel(
    label: str,
    before: np.ndarray,
    after: np.ndarray | None,
    boxes: Sequence[Box],
    thumb_height: int,
) -> np.ndarray:
    """Build one labelled tile: the "before" film with its boxes, then the "after" film if any."""
    # Boxes are drawn on the full film and then shrunk, with a line width chosen so
    # that it is about 2 px on the thumbnail.
    line = max(2, round(2 * before.shape[0] / thumb_height))
    thumbs = [_thumbnail(draw_boxes(before, boxes, thickness=line), thumb_height)]
    if after is not None:
        thumbs.append(_thumbnail(_as_rgb(after), thumb_height))

    width = sum(thumb.shape[1] for thumb in thumbs) + _GAP * (len(thumbs) - 1)
    width = max(width, 8 * len(label) + 4)
    tile = np.full((_LABEL_HEIGHT + thumb_height, width, 3), _SHEET_BACKGROUND, np.uint8)
    cv2.putText(tile, label, (2, _LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 230, 80), 1, cv2.LINE_AA)
    x = 0
    for thumb in thumbs:
        tile[_LABEL_HEIGHT:, x : x + thumb.shape[1]] = thumb
        x += thumb.shape[1] + _GAP
    return tile


def contact_sheet(
    pairs: list[tuple[str, np.ndarray, np.ndarray | None]],
    path: str | Path,
    thumb_height: int = 256,
    boxes: Sequence[Sequence[Box]] | None = None,
    columns: int = 4,
) -> Path:
    """Write a PNG grid of (label, before, after) tiles and return its path.

    Each tile shows the label above the "before" film and, when `after` is not None,
    the "after" film to its right. `boxes[i]` (full-resolution pixels of the "before"
    film of `pairs[i]`) are outlined in red on that film.
    """
    if not pairs:
        raise ValueError("contact_sheet needs at least one (label, before, after) tuple")
    if boxes is not None and len(boxes) != len(pairs):
        raise ValueError(f"got {len(boxes)} box lists for {len(pairs)} pairs; pass one list per pair")

    tiles = [
        _panel(label, before, after, boxes[index] if boxes is not None else [], thumb_height)
        for index, (label, before, after) in enumerate(pairs)
    ]
    tile_width = max(tile.shape[1] for tile in tiles)
    tile_height = tiles[0].shape[0]
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)

    sheet = np.full(
        (rows * (tile_height + _GAP) - _GAP, columns * (tile_width + _GAP) - _GAP, 3),
        _SHEET_BACKGROUND,
        np.uint8,
    )
    for index, tile in enumerate(tiles):
        top = (index // columns) * (tile_height + _GAP)
        left = (index % columns) * (tile_width + _GAP)
        sheet[top : top + tile_height, left : left + tile.shape[1]] = tile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"failed to write contact sheet to {path}: check that the folder is writable")
    return path
