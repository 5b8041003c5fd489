"""Breast geometry checks: chest-wall side against the catalogued side, and CC against MLO.

A film whose breast faces the wrong way for its catalogued side, or that looks like
an MLO while catalogued as CC, is either mislabelled or follows another convention.
These checks flag such films; they never relabel anything.

Orientation conventions, measured on the sample films (see `expected_chest_wall`):
the mini-DDSM convention depends on the digitizer, given by the scanner letter
that starts each file name. On the Lumisys laser films (letter C) a LEFT breast
has its chest wall on the image's left. On the DBA films (letter A) it is on the
image's right. In mini-MIAS, a LEFT breast has its chest wall on the image's left.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

import cv2
import numpy as np

from curator.detectors.breast import (
    ChestWall,
    breast_region,
    chest_wall_from_mask,
    working_copy,
)

View = Literal["CC", "MLO"]

# Chest-wall edge of a LEFT breast, by dataset and (for mini-DDSM) scanner letter.
# A RIGHT breast is the mirror image. Each entry holds for every sample film it
# covers: 24 mini-DDSM films with letter A, 68 with letter C and 40 mini-MIAS films.
# NOTE: letters B and D do not occur in the sample, so those films are not checked
# (expected_chest_wall returns None), and the MIAS rule rests on 40 of its 322 films.
_LEFT_BREAST_CHEST_WALL: dict[tuple[str, str | None], ChestWall] = {
    ("mini-ddsm", "A"): "right",
    ("mini-ddsm", "C"): "left",
    ("mias", None): "left",
}

_DATASET_ALIASES = {
    "mini-ddsm": "mini-ddsm",
    "miniddsm": "mini-ddsm",
    "ddsm": "mini-ddsm",
    "mias": "mias",
    "mini-mias": "mias",
    "minimias": "mias",
}

_DDSM_FILE_NAME = re.compile(r"^([A-D])_\d{4}_\d\.(LEFT|RIGHT)_(CC|MLO)", re.IGNORECASE)

# Weights of the MLO score. The pectoral muscle reaches the top of the film on the
# chest-wall side, so an MLO breast mask is wide in its top rows (CC: under 0.3 of
# its widest row in the sample). The muscle is also denser than the breast below it,
# so the upper chest-wall corner is brighter (in CC it is the thin upper skin fold).
# NOTE: the centres and scales were set by looking at the same 132 sample films they
# are checked on, and the margin is thin: the highest CC score there is 0.47 and
# the lowest MLO score 0.57.
_TOP_WIDTH_CENTRE = 0.30
_TOP_WIDTH_SCALE = 0.10
_CORNER_CONTRAST_CENTRE = 0.50
_CORNER_CONTRAST_SCALE = 0.35


@dataclass(frozen=True)
class GeometryResult:
    """Outcome of the geometry checks on one film.

    `side_agrees` and `view_agrees` are None when there is nothing to compare with:
    no convention for the dataset, or no catalogued view.
    """

    chest_wall: ChestWall
    expected_chest_wall: ChestWall | None
    side_agrees: bool | None
    view_guess: View
    view_score: float
    view_agrees: bool | None

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready values."""
        return asdict(self)


def normalise_dataset(dataset: str) -> str:
    """Return the canonical dataset name ('mini-ddsm' or 'mias'), or the lower-cased input if unknown."""
    key = dataset.strip().lower().replace("_", "-").replace(" ", "-")
    return _DATASET_ALIASES.get(key, key)


def ddsm_scanner(file_name: str) -> str | None:
    """Return the scanner letter (A-D) that starts a mini-DDSM file name, or None."""
    match = _DDSM_FILE_NAME.match(file_name)
    return match.group(1).upper() if match else None


def expected_chest_wall(side: str, dataset: str, scanner: str | None = None) -> ChestWall | None:
    """Return the image edge the chest wall should be on, or None when the convention is unknown.

    `side` is LEFT or RIGHT (any case). For mini-DDSM the convention depends on the
    digitizer, so `scanner` (the file name's first letter, see `ddsm_scanner`) is
    required: without it, or for letters B and D, it returns None.
    """
    side = side.strip().upper()
    if side not in ("LEFT", "RIGHT"):
        raise ValueError(f"invalid side {side!r}: expected LEFT or RIGHT")

    dataset = normalise_dataset(dataset)
    key = (dataset, scanner.upper() if scanner and dataset == "mini-ddsm" else None)
    left_breast = _LEFT_BREAST_CHEST_WALL.get(key)
    if left_breast is None:
        return None
    if side == "LEFT":
        return left_breast
    return "right" if left_breast == "left" else "left"


def chest_wall_side(image: np.ndarray) -> ChestWall:
    """Return the image edge ('left' or 'right') the breast is attached to."""
    return chest_wall_from_mask(breast_region(working_copy(image)))


def _mlo_score(work: np.ndarray, mask: np.ndarray, chest_wall: ChestWall) -> float:
    """Return the MLO score in [0, 1] of a working copy and its breast mask."""
    if chest_wall == "right":
        work = work[:, ::-1]
        mask = mask[:, ::-1]
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    if rows.size < 10 or columns.size < 10:
        return 0.0
    top, bottom = int(rows[0]), int(rows[-1])
    left, right = int(columns[0]), int(columns[-1])
    height = bottom - top + 1
    width = right - left + 1

    widths = mask[top : bottom + 1].sum(axis=1)
    top_width = float(widths[: max(1, height // 10)].mean() / widths.max())

    # Corner contrast: the triangle cut from the upper chest-wall corner of the
    # breast's bounding box by the diagonal u = 0.4, against the band just beyond it.
    y, x = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    u = (x - left) / width + (y - top) / height
    corner = mask & (u < 0.4)
    beyond = mask & (u > 0.5) & (u < 0.9)
    smooth = cv2.GaussianBlur(work, (5, 5), 0).astype(np.float64)
    if corner.sum() < 20 or beyond.sum() < 20:
        corner_contrast = 0.0
    else:
        corner_contrast = float(
            (smooth[corner].mean() - smooth[beyond].mean()) / (smooth[mask].std() + 1.0)
        )

    logit = (top_width - _TOP_WIDTH_CENTRE) / _TOP_WIDTH_SCALE + (
        corner_contrast - _CORNER_CONTRAST_CENTRE
    ) / _CORNER_CONTRAST_SCALE
    return float(1.0 / (1.0 + np.exp(-logit)))


def looks_like_mlo(image: np.ndarray) -> tuple[bool, float]:
    """Guess whether a film is an MLO view from its pectoral muscle; return (is_mlo, score in [0, 1])."""
    work = working_copy(image)
    mask = breast_region(work)
    score = _mlo_score(work, mask, chest_wall_from_mask(mask))
    return score >= 0.5, score


def check_geometry(
    image: np.ndarray,
    side: str | None,
    view: str | None,
    dataset: str,
    scanner: str | None = None,
) -> GeometryResult:
    """Compare a film's chest-wall side and view with its catalogued side and view."""
    work = working_copy(image)
    mask = breast_region(work)
    chest_wall = chest_wall_from_mask(mask)

    expected = expected_chest_wall(side, dataset, scanner) if side else None
    score = _mlo_score(work, mask, chest_wall)
    view_guess: View = "MLO" if score >= 0.5 else "CC"
    return GeometryResult(
        chest_wall=chest_wall,
        expected_chest_wall=expected,
        side_agrees=None if expected is None else chest_wall == expected,
        view_guess=view_guess,
        view_score=score,
        view_agrees=None if not view else view.strip().upper() == view_guess,
    )


def to_canonical(image: np.ndarray, chest_wall: ChestWall) -> tuple[np.ndarray, dict[str, str]]:
    """Flip a film so its chest wall is on the left; return the new array and the transform applied."""
    if chest_wall == "left":
        return image.copy(), {}
    if chest_wall == "right":
        return np.ascontiguousarray(image[:, ::-1]), {"flip": "horizontal"}
    raise ValueError(f"invalid chest_wall {chest_wall!r}: expected 'left' or 'right'")


def from_canonical(image: np.ndarray, transform: dict[str, str]) -> np.ndarray:
    """Undo `to_canonical`: apply the inverse of `transform` to a canonical film."""
    flip = transform.get("flip")
    if flip is None:
        return image.copy()
    if flip == "horizontal":
        return np.ascontiguousarray(image[:, ::-1])
    raise ValueError(f"invalid transform {transform!r}: expected {{}} or {{'flip': 'horizontal'}}")
