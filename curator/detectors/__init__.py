"""Image detectors that work on plain arrays: white marking, breast geometry, paint-out and contact sheets.

Nothing here touches the catalog; callers record the returned dataclasses.
"""

from curator.detectors.geometry import GeometryResult, check_geometry, chest_wall_side, looks_like_mlo
from curator.detectors.markings import (
    DEFAULT_THRESHOLD,
    DETECTOR_NAME,
    DETECTOR_VERSION,
    MarkingParams,
    MarkingResult,
    breast_mask,
    detect_markings,
    load_for_detection,
)
from curator.detectors.paintout import paint_out

__all__ = [
    "DEFAULT_THRESHOLD",
    "DETECTOR_NAME",
    "DETECTOR_VERSION",
    "GeometryResult",
    "MarkingParams",
    "MarkingResult",
    "breast_mask",
    "check_geometry",
    "chest_wall_side",
    "detect_markings",
    "load_for_detection",
    "looks_like_mlo",
    "paint_out",
]
