"""Paint-out: derived images with the white marking filled in, recorded with their parent.

Each cleaned film is a new catalog row (origin ``derived``, method ``cleaned``) whose parameters
hold the boxes that were filled and who drew them (the curator or the detector). It keeps the
parent's label, view, side and patient, so splits keep it with its patient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select

from curator.catalog import NewImage, latest_boxes, store_new_image
from curator.db import Catalog
from curator.imaging import UnreadableImage, read_gray, to_uint8
from curator.models import Image, Lineage
from curator.query import Query
from curator.settings import Settings


@dataclass
class CleanSummary:
    """Result of a paint-out command: images created, already present, without boxes, failed."""

    created: list[int] = field(default_factory=list)
    existing: list[int] = field(default_factory=list)
    without_boxes: int = 0
    failures: list[str] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)


def clean_images(
    catalog: Catalog,
    settings: Settings,
    query: Query,
    on_progress: Callable[[int, int], None] | None = None,
    dry_run: bool = False,
) -> CleanSummary:
    """Paint out the marking boxes of every selected original; one transaction per image."""
    from curator.detectors.paintout import paint_out

    summary = CleanSummary()
    with catalog.session() as session:
        ids = list(session.scalars(select(Image.id).where(query.where(), Image.origin == "original").order_by(Image.id)))
    for done, image_id in enumerate(ids, start=1):
        with catalog.transaction() as session:
            image = session.get(Image, image_id)
            found = latest_boxes(session, image_id)
            if found is None:
                summary.without_boxes += 1
            else:
                boxes, source = found
                try:
                    pixels = to_uint8(read_gray(Path(image.file_path)))
                except UnreadableImage as error:
                    summary.failures.append(f"image {image_id}: {error}")
                    pixels = None
                if pixels is not None:
                    cleaned = paint_out(pixels, [tuple(int(value) for value in box) for box in boxes])
                    if dry_run:
                        summary.pairs.append((image_id, -1))
                    else:
                        new = NewImage(
                            pixels=cleaned, origin="derived", method="cleaned",
                            params={"boxes": [list(map(int, box)) for box in boxes], "box_source": source},
                            parents=[(image_id, "parent")],
                            label=image.label, label_source="parent", view=image.view, view_source="parent",
                            side=image.side, side_source="parent", dataset=image.dataset, patient_key=image.patient_key,
                            extra={"scanner": image.extra.get("scanner")} if image.extra.get("scanner") else None,
                        )
                        work_size = int(image.extra.get("work_size", 128))
                        fit = str(image.extra.get("work_fit", "stretch"))
                        row, is_new = store_new_image(session, settings, new, work_size=work_size, fit=fit)
                        # A cleaned film has no marking left, as far as the detector's boxes go.
                        row.marking_detected = False if is_new else row.marking_detected
                        (summary.created if is_new else summary.existing).append(row.id)
                        summary.pairs.append((image_id, row.id))
        if on_progress:
            on_progress(done, len(ids))
    return summary


def contact_sheet_for_query(catalog: Catalog, settings: Settings, query: Query, path: Path, limit: int = 48, thumb_height: int = 256) -> tuple[Path, int]:
    """Write a before/after sheet for the selected images: boxes on the film, its cleaned child beside it."""
    from curator.detectors.contact import contact_sheet

    pairs: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    boxes: list[list[tuple[int, int, int, int]]] = []
    with catalog.session() as session:
        images = list(session.scalars(select(Image).where(query.where()).order_by(Image.id).limit(limit)))
        for image in images:
            source = image
            after_image: Image | None = None
            if image.origin == "derived" and image.method == "cleaned":
                parent_id = session.scalar(select(Lineage.parent_id).where(Lineage.child_id == image.id))
                source = session.get(Image, parent_id) if parent_id else image
                after_image = image
            else:
                child_id = session.scalar(
                    select(Image.id).join(Lineage, Lineage.child_id == Image.id).where(Lineage.parent_id == image.id, Image.method == "cleaned").order_by(Image.id.desc()).limit(1)
                )
                after_image = session.get(Image, child_id) if child_id else None
            try:
                before = to_uint8(read_gray(Path(source.file_path)))
                after = to_uint8(read_gray(Path(after_image.file_path))) if after_image else None
            except UnreadableImage:
                continue
            found = latest_boxes(session, source.id)
            label = f"#{source.id} {source.label or ''} {source.view or ''}-{(source.side or '').lower()}"
            if after_image:
                label += f" -> #{after_image.id}"
            pairs.append((label, before, after))
            boxes.append([tuple(int(value) for value in box) for box in (found[0] if found else [])])
    if not pairs:
        return path, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(pairs, path, thumb_height=thumb_height, boxes=boxes)
    return path, len(pairs)
