"""White erased-label detection: finds the white paint that hid patient details on mini-DDSM films.

Most mini-DDSM Normal films had their label area painted over in white, which a
classifier learns in place of the pathology. The detector works on a copy whose
longest side is 512 px. Each paint region covers about one percent of the film or
more, so nothing the rules need is lost at that size, and the copy takes
milliseconds to analyse.

Each connected region of near-saturated pixels (>= 245 by default) is a candidate
and gets five features, each turned into a number in [0, 1] by a linear ramp between
two limits stated in `MarkingParams`:

* size: area as a fraction of the image. A paint region covers 0.8-10 % of the
  film in the samples, a film-hanger punch hole under 0.1 % and a film-edge strip
  under 0.8 %.
* thickness: diameter of the largest inscribed disc over the image's shorter side.
  Paint is a blob (11-33 % in the samples). A film-edge strip is a few pixels thick
  whatever its length, and a punch hole is a small half disc cut by the image edge
  (both under 4 % in the samples).
* solidity: area over convex-hull area. A daub of paint is compact (above 0.85).
  A ragged region is not.
* flatness: standard deviation of the grey level inside the region. Paint is
  clipped at 255 and has no texture (under 0.8 in the samples). Near-saturated
  tissue still varies across the 245-255 range (about 3 when it is spread evenly).
* place: the fraction of a ring around the region that lies inside the breast.
  Paint sits on the film background, sometimes against the skin line. A bright
  region surrounded by tissue is far more likely a breast implant, dense tissue
  or a calcified mass, so such a region is scored down below the threshold even
  when it is a flat white rectangle.

A candidate's score is the product of the five values. The image's score is its
best candidate's score, and the boxes are those of the candidates at or above the
threshold, in the coordinates of the full-resolution film. Any large, flat, white
region outside the breast counts, so the white tape band on MIAS film mdb274 is
reported as well, which matches its hand label.

The ramp limits come from the physical sizes above. Each sits well clear of the
values measured on the 92 mini-DDSM and 40 MIAS sample films, but they were checked
against those same films only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from curator.detectors.breast import (
    ChestWall,
    breast_region,
    chest_wall_from_mask,
    load_for_detection,
    working_copy,
)

DETECTOR_NAME = "white-marking"
DETECTOR_VERSION = "1"

# Score at or above which an image counts as marked. Every candidate feature is
# 1 when it is clearly paint-like and 0 when it is clearly not, so 0.5 requires
# the candidate's features to be, taken together, at least half-way to paint.
DEFAULT_THRESHOLD = 0.5

Box = tuple[int, int, int, int]

__all__ = [
    "DEFAULT_THRESHOLD",
    "DETECTOR_NAME",
    "DETECTOR_VERSION",
    "Box",
    "CandidateFeatures",
    "MarkingParams",
    "MarkingResult",
    "breast_mask",
    "detect_markings",
    "load_for_detection",
]


@dataclass(frozen=True)
class MarkingParams:
    """Limits of the marking rules; the catalog stores them with each detector run.

    Each `(low, high)` pair is a linear ramp: a feature at `low` or below scores 0,
    at `high` or above scores 1 (reversed for `flat_std`, where less is better).
    Fractions are of the working copy's area or shorter side.
    """

    working_size: int = 512
    # Grey level at or above which a pixel can be paint.
    bright_level: int = 245
    # Regions smaller than this fraction of the image are not candidates at all.
    min_candidate_fraction: float = 0.0005
    area_fraction: tuple[float, float] = (0.003, 0.008)
    thickness: tuple[float, float] = (0.06, 0.09)
    solidity: tuple[float, float] = (0.6, 0.8)
    flat_std: tuple[float, float] = (2.5, 1.0)
    tissue_fraction: tuple[float, float] = (0.6, 0.95)
    # Place factor of a candidate completely surrounded by tissue.
    enclosed_weight: float = 0.3
    # Width of the ring used for the place feature, as a fraction of the shorter side.
    ring_fraction: float = 0.02

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as plain JSON-ready values (ramps as two-item lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class CandidateFeatures:
    """One near-saturated region: its box in full-resolution pixels, its features and its score."""

    box: Box
    area_fraction: float
    thickness: float
    solidity: float
    intensity_std: float
    tissue_fraction: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Return the features as plain values, the box as a list."""
        values = asdict(self)
        values["box"] = list(self.box)
        return values


@dataclass(frozen=True)
class MarkingResult:
    """Verdict of the white-marking detector on one image."""

    score: float
    marked: bool
    boxes: list[Box]
    threshold: float
    chest_wall: ChestWall
    candidates: list[CandidateFeatures] = field(default_factory=list)
    full_shape: tuple[int, int] = (0, 0)
    working_shape: tuple[int, int] = (0, 0)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready values, with the detector name and version."""
        return {
            "detector": DETECTOR_NAME,
            "version": DETECTOR_VERSION,
            "score": self.score,
            "marked": self.marked,
            "boxes": [list(box) for box in self.boxes],
            "threshold": self.threshold,
            "chest_wall": self.chest_wall,
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "full_shape": list(self.full_shape),
            "working_shape": list(self.working_shape),
        }


def breast_mask(image_uint8: np.ndarray, working_size: int = 512) -> np.ndarray:
    """Return the breast mask of an 8-bit grayscale mammogram, at the size of its working copy.

    The mask is the largest tissue region of the copy whose longest side is
    `working_size`, with enclosed holes filled. Near-saturated paint is not part of it
    unless tissue surrounds it. Use `curator.detectors.geometry.chest_wall_side` for
    the edge it is attached to.
    """
    return breast_region(working_copy(image_uint8, working_size))


def _ramp(value: float, limits: tuple[float, float]) -> float:
    """Map `value` linearly from limits[0] (0.0) to limits[1] (1.0), clipped; limits may be descending."""
    low, high = limits
    if high == low:
        return float(value >= high)
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))


def _solidity(component: np.ndarray, area: int) -> float:
    """Return the pixel area over the pixel area of the filled convex hull (at most 1)."""
    points = cv2.findNonZero(component.astype(np.uint8))
    hull = cv2.convexHull(points)
    hull_mask = np.zeros(component.shape, np.uint8)
    cv2.fillConvexPoly(hull_mask, hull, 1)
    return min(1.0, area / max(1, int(hull_mask.sum())))


def _thickness(component: np.ndarray) -> float:
    """Return the diameter in pixels of the largest disc inside the component.

    The image border counts as outside, so a region cut by the film edge is only as
    thick as the part that is visible.
    """
    padded = np.pad(component.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return 2.0 * float(distance.max())


def _full_resolution_box(
    box: Box, scale_x: float, scale_y: float, full_shape: tuple[int, int]
) -> Box:
    """Scale a working-copy box out to full-resolution pixels, rounding outwards."""
    x, y, width, height = box
    full_height, full_width = full_shape
    left = max(0, int(np.floor(x * scale_x)))
    top = max(0, int(np.floor(y * scale_y)))
    right = min(full_width, int(np.ceil((x + width) * scale_x)))
    bottom = min(full_height, int(np.ceil((y + height) * scale_y)))
    return (left, top, right - left, bottom - top)


def _candidate_score(
    features: dict[str, float], params: MarkingParams
) -> float:
    """Combine the five feature ramps into one score in [0, 1]."""
    place = 1.0 - (1.0 - params.enclosed_weight) * _ramp(
        features["tissue_fraction"], params.tissue_fraction
    )
    return (
        _ramp(features["area_fraction"], params.area_fraction)
        * _ramp(features["thickness"], params.thickness)
        * _ramp(features["solidity"], params.solidity)
        * _ramp(features["intensity_std"], params.flat_std)
        * place
    )


def detect_markings(
    image_uint8: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    params: MarkingParams | None = None,
    full_shape: tuple[int, int] | None = None,
) -> MarkingResult:
    """Find white paint on an 8-bit grayscale mammogram.

    The image is analysed on a copy whose longest side is `params.working_size`;
    the paint regions are large, so this loses nothing. `image_uint8` may already be
    such a copy (from `load_for_detection`): then pass the film's `full_shape`
    (height, width) so the boxes come back in full-resolution pixels.
    """
    params = params or MarkingParams()
    work = working_copy(image_uint8, params.working_size)
    work_height, work_width = work.shape
    full_shape = tuple(full_shape) if full_shape is not None else image_uint8.shape
    scale_x = full_shape[1] / work_width
    scale_y = full_shape[0] / work_height

    breast = breast_region(work, params.bright_level)
    chest_wall = chest_wall_from_mask(breast)

    # A 3x3 closing rejoins paint cut in two by one-pixel scanner line artefacts.
    saturated = work >= params.bright_level
    bright = cv2.morphologyEx(saturated.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    image_area = work_height * work_width
    shorter_side = min(work_height, work_width)
    ring_radius = max(2, round(shorter_side * params.ring_fraction))
    ring_kernel = cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * ring_radius + 1, 2 * ring_radius + 1)
    )
    erode_kernel = np.ones((3, 3), np.uint8)

    candidates: list[CandidateFeatures] = []
    for index in range(1, count):
        area = int(stats[index, cv2.CC_STAT_AREA])
        if area < params.min_candidate_fraction * image_area:
            continue
        box = tuple(int(value) for value in stats[index, :4])

        # Every feature is measured in a window around the region, wide enough for its ring.
        x, y, width, height = box
        top, bottom = max(0, y - ring_radius - 1), min(work_height, y + height + ring_radius + 1)
        left, right = max(0, x - ring_radius - 1), min(work_width, x + width + ring_radius + 1)
        component = labels[top:bottom, left:right] == index
        window_saturated = saturated[top:bottom, left:right]
        window_work = work[top:bottom, left:right]

        # The rim of a region is blended with its surroundings by the shrinking and
        # by JPEG, and the closing added line-artefact pixels, so flatness is
        # measured on the saturated interior only.
        interior = cv2.erode(component.astype(np.uint8), erode_kernel).astype(bool) & window_saturated
        inside_values = window_work[interior] if interior.any() else window_work[component & window_saturated]

        # The ring leaves out other bright pixels so neighbouring paint does not
        # count as tissue or as background.
        ring = cv2.dilate(component.astype(np.uint8), ring_kernel).astype(bool)
        ring &= ~component & (bright[top:bottom, left:right] == 0)
        window_breast = breast[top:bottom, left:right]
        tissue_fraction = float(window_breast[ring].mean()) if ring.any() else 0.0

        features = {
            "area_fraction": area / image_area,
            "thickness": _thickness(component) / shorter_side,
            "solidity": _solidity(component, area),
            "intensity_std": float(inside_values.std()),
            "tissue_fraction": tissue_fraction,
        }
        candidates.append(
            CandidateFeatures(
                box=_full_resolution_box(box, scale_x, scale_y, full_shape),
                score=_candidate_score(features, params),
                **features,
            )
        )

    candidates.sort(key=lambda candidate: candidate.score, reverse=True)
    score = candidates[0].score if candidates else 0.0
    return MarkingResult(
        score=score,
        marked=score >= threshold,
        boxes=[candidate.box for candidate in candidates if candidate.score >= threshold],
        threshold=threshold,
        chest_wall=chest_wall,
        candidates=candidates,
        full_shape=(int(full_shape[0]), int(full_shape[1])),
        working_shape=(work_height, work_width),
    )
