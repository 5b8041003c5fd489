"""Synthetic films for testing the detectors: a textured breast on a noisy black film, with optional paint.

The breast is a half ellipse attached to the chest-wall edge, brighter towards the
chest wall as a real breast is (it is thicker there), with a faint texture. All
randomness comes from `seed`, so a film is reproducible.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Box = tuple[int, int, int, int]

BACKGROUND_LEVEL = 10
TISSUE_LEVEL = 150


def synthetic_film(
    height: int = 1200,
    width: int = 600,
    chest_wall: Literal["left", "right"] = "left",
    breast_depth: float = 0.7,
    breast_height: float = 0.8,
    seed: int = 0,
) -> np.ndarray:
    """Return an 8-bit film with a breast attached to the `chest_wall` edge.

    `breast_depth` is the ellipse's semi-axis across the film and `breast_height` its
    full extent along the chest wall, both as fractions of the film's width and height.
    """
    rng = np.random.default_rng(seed)
    film = rng.normal(BACKGROUND_LEVEL, 2.0, (height, width))

    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    depth = breast_depth * width
    half_height = breast_height * height / 2
    distance_from_wall = x if chest_wall == "left" else (width - 1 - x)
    radial = (distance_from_wall / depth) ** 2 + ((y - height / 2) / half_height) ** 2
    breast = radial <= 1.0

    texture = cv2.GaussianBlur(rng.normal(0.0, 25.0, (height, width)), (0, 0), 6)
    tissue = TISSUE_LEVEL + 50 * (1 - distance_from_wall / depth) + texture
    # The skin line fades over a few pixels, as on film.
    edge = np.clip((1.0 - radial) * 12.0, 0.0, 1.0)
    film = np.where(breast, film * (1 - edge) + tissue * edge, film)
    return np.clip(film, 0, 235).astype(np.uint8)


def add_paint(film: np.ndarray, box: Box, value: int = 255) -> np.ndarray:
    """Return a copy of `film` with the (x, y, width, height) box filled with flat `value`."""
    painted = film.copy()
    x, y, width, height = box
    painted[y : y + height, x : x + width] = value
    return painted


def add_half_disc(film: np.ndarray, centre_x: int, radius: int, value: int = 255) -> np.ndarray:
    """Return a copy of `film` with a white half disc on its top edge, like a film-hanger punch hole."""
    marked = film.copy()
    cv2.circle(marked, (centre_x, 0), radius, int(value), thickness=-1)
    return marked
