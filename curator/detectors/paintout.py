"""Paint-out: replaces detected white paint with the film background around it.

Works at full resolution on the boxes that `detect_markings` returns. Only the
near-saturated paint regions that overlap a box (grown by a few pixels to take in
their blurred rim) are replaced. Paint on the film background gets the local
background level. Paint over tissue or the skin line is filled by Telea inpainting,
so the skin line continues instead of ending in a flat dark notch.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from curator.detectors.breast import SATURATED_LEVEL, breast_region, tissue_level, working_copy

Box = tuple[int, int, int, int]

# Growth of the paint mask, as a fraction of the image's shorter side (at least
# 3 px). JPEG blocks and the film scanner's blur leave a bright rim of about this
# width around mini-DDSM paint.
RIM_FRACTION = 0.005

# Width of the ring around a box from which the background level is taken, as a
# fraction of the image's shorter side (at least 8 px).
RING_FRACTION = 0.03

# Paint pixels this close to tissue (fraction of the shorter side, at least 3 px)
# are inpainted rather than filled flat.
TISSUE_MARGIN_FRACTION = 0.01

# Largest radius of the closing that carries the breast outline across paint, as a
# fraction of the shorter side.
OUTLINE_CAP_FRACTION = 0.15

_MIN_RING_PIXELS = 50


def full_resolution_breast_mask(image_uint8: np.ndarray) -> np.ndarray:
    """Return the breast mask of a film at the film's own size (nearest-neighbour upscaled)."""
    mask = breast_region(working_copy(image_uint8))
    height, width = image_uint8.shape
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def _scaled_radius(shape: tuple[int, int], fraction: float, minimum: int) -> int:
    return max(minimum, round(min(shape) * fraction))


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _coarse_closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """Close a 0/1 mask with a disc of `radius` px, on a copy shrunk so the disc is about 8 px.

    At full resolution a large disc took about half a second per region on the
    sample films, and the outline it restores does not need single-pixel accuracy.
    """
    height, width = mask.shape
    factor = max(1, min(radius // 8, min(height, width) // 16))
    small = cv2.resize(
        mask, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA
    )
    small = (small > 0).astype(np.uint8)
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, _disc(max(1, radius // factor)))
    return cv2.resize(closed, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def _clip_window(box: Box, margin: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Return (top, bottom, left, right) of `box` grown by `margin`, clipped to the image."""
    x, y, width, height = box
    return (
        max(0, y - margin),
        min(shape[0], y + height + margin),
        max(0, x - margin),
        min(shape[1], x + width + margin),
    )


def paint_mask(image_uint8: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """Return the full-resolution mask of the pixels `paint_out` replaces.

    It is every near-saturated region that overlaps a box, grown by the rim width.
    A region may reach past its box by up to half the box's larger side. The boxes
    come from a shrunken copy, where a narrow neck of paint can break off a lobe
    that is still joined to it at full resolution.
    """
    shape = image_uint8.shape
    rim = _scaled_radius(shape, RIM_FRACTION, 3)
    core = np.zeros(shape, np.uint8)
    for box in boxes:
        reach = max(box[2], box[3]) // 2
        top, bottom, left, right = _clip_window(box, reach, shape)
        # The closing rejoins paint that a scanner line artefact cuts in two.
        saturated = (image_uint8[top:bottom, left:right] >= SATURATED_LEVEL).astype(np.uint8)
        saturated = cv2.morphologyEx(saturated, cv2.MORPH_CLOSE, _disc(rim))
        count, labels = cv2.connectedComponents(saturated, connectivity=8)
        if count <= 1:
            continue

        # Components that have a pixel inside the box (one pixel of slack for rounding).
        box_top, box_bottom, box_left, box_right = _clip_window(box, 1, shape)
        inside = labels[box_top - top : box_bottom - top, box_left - left : box_right - left]
        touching = np.unique(inside[inside > 0])
        core[top:bottom, left:right] |= np.isin(labels, touching).astype(np.uint8)
    return cv2.dilate(core, _disc(rim)).astype(bool)


def paint_out(
    image_uint8: np.ndarray,
    boxes: Sequence[Box],
    breast_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Return a copy of the film with the white paint in `boxes` replaced.

    `boxes` are (x, y, width, height) in the film's pixels, and the pixels replaced
    are those of `paint_mask`. `breast_mask`, if given, is a boolean mask of the
    film's size. Without it the mask is computed here. Each painted region away
    from tissue takes the median of a ring of background pixels around it, or of
    the whole background when the ring has too few. Paint over tissue or the skin
    line is inpainted (Telea). Only pixels of `paint_mask` change, and the input
    array is left as it was.
    """
    if image_uint8.ndim != 2 or image_uint8.dtype != np.uint8:
        raise ValueError(
            f"expected a 2-D uint8 grayscale image, got shape {image_uint8.shape} and dtype {image_uint8.dtype}"
        )
    result = image_uint8.copy()
    if not boxes:
        return result

    shape = image_uint8.shape
    if breast_mask is None:
        breast_mask = full_resolution_breast_mask(image_uint8)
    elif breast_mask.shape != shape:
        raise ValueError(f"breast_mask has shape {breast_mask.shape}, expected the image's shape {shape}")

    paint = paint_mask(image_uint8, boxes)
    ring_width = _scaled_radius(shape, RING_FRACTION, 8)
    tissue_margin = _scaled_radius(shape, TISSUE_MARGIN_FRACTION, 3)

    # The film background: outside the breast and darker than the tissue level, so
    # label plates, tape and film-edge strips next to the paint do not count.
    work = working_copy(image_uint8)
    background_ceiling = tissue_level(cv2.GaussianBlur(work, (5, 5), 0))
    background = ~breast_mask & ~paint & (image_uint8 < background_ceiling)
    global_level = int(np.median(image_uint8[background])) if background.any() else 0

    count, labels, stats, _ = cv2.connectedComponentsWithStats(paint.astype(np.uint8), connectivity=8)
    for index in range(1, count):
        box = tuple(int(value) for value in stats[index, :4])
        # A closing disc about as large as the region bridges a bite it took out of
        # the skin line, so the outline is carried straight across it. The cap keeps
        # a long band of tape along the film edge from closing over half the film.
        outline_radius = max(3, min(box[2], box[3], round(OUTLINE_CAP_FRACTION * min(shape))))
        top, bottom, left, right = _clip_window(box, max(ring_width, outline_radius + tissue_margin), shape)
        region = labels[top:bottom, left:right] == index

        ring = cv2.dilate(region.astype(np.uint8), _disc(ring_width)).astype(bool) & ~region
        ring_values = image_uint8[top:bottom, left:right][ring & background[top:bottom, left:right]]
        level = int(np.median(ring_values)) if ring_values.size >= _MIN_RING_PIXELS else global_level
        crop = result[top:bottom, left:right]
        crop[region] = level

        # Tissue hidden under the paint: the breast outline is closed across the
        # paint, so a bite that the paint took out of the skin line is inpainted
        # (Telea) and does not stay a flat dark notch. The whole region is inpainted
        # from the unpainted pixels around it, so tissue and background meet about
        # half-way, but only the part inside the outline keeps the inpainted values.
        breast = breast_mask[top:bottom, left:right].astype(np.uint8)
        closed = _coarse_closing(breast, outline_radius)
        near_tissue = cv2.dilate(breast, _disc(tissue_margin)).astype(bool)
        under_tissue = region & (closed | near_tissue)
        if under_tissue.any():
            # Every paint pixel in the window is unknown, so nearby paint cannot bleed in.
            filled = cv2.inpaint(
                image_uint8[top:bottom, left:right],
                paint[top:bottom, left:right].astype(np.uint8),
                tissue_margin,
                cv2.INPAINT_TELEA,
            )
            crop[under_tissue] = filled[under_tissue]

            # Soften the step between restored tissue and flat background, as the
            # skin line fades on film.
            band_kernel = _disc(max(1, tissue_margin // 2))
            band = cv2.dilate(under_tissue.astype(np.uint8), band_kernel).astype(bool)
            band &= ~cv2.erode(under_tissue.astype(np.uint8), band_kernel).astype(bool) & region
            softened = cv2.GaussianBlur(crop, (0, 0), max(1.0, tissue_margin / 2))
            crop[band] = softened[band]

    return result
