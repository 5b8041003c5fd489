"""Catalog operations shared by the CLI and the TUI: finding, counting, describing, flagging
images and recording new derived or synthetic ones with their lineage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from curator.db import Catalog, CatalogError
from curator.imaging import encode_png, sha256_of_bytes, working_copy, write_atomic
from curator.models import Detection, DetectionRun, Generator, Image, Lineage, MarkingVerdict, effective_marking, utcnow
from curator.query import Query, select_images
from curator.settings import Settings


def count_images(catalog: Catalog, query: Query) -> int:
    """Return how many images match a query."""
    with catalog.session() as session:
        return session.scalar(select(func.count(Image.id)).where(query.where())) or 0


def find_images(catalog: Catalog, query: Query, limit: int | None = None, offset: int = 0) -> list[Image]:
    """Return the images matching a query, ordered by id."""
    with catalog.session() as session:
        return list(session.scalars(select_images(query, limit=limit, offset=offset)))


def image_ids(session: Session, query: Query) -> list[int]:
    """Return the ids of the images matching a query, ordered by id."""
    return list(session.scalars(select(Image.id).where(query.where()).order_by(Image.id)))


def marking_state(image: Image) -> str:
    """Return ``marked``, ``unmarked`` or ``unchecked`` with the curator's verdict winning."""
    return effective_marking(image.marking_verdict, image.marking_detected) or "unchecked"


def stats(catalog: Catalog, query: Query) -> dict[str, Any]:
    """Count the matching images by label, view, side, origin, method, dataset and marking."""
    columns = {
        "label": Image.label,
        "view": Image.view,
        "side": Image.side,
        "origin": Image.origin,
        "method": Image.method,
        "dataset": Image.dataset,
    }
    result: dict[str, Any] = {"query": str(query)}
    with catalog.session() as session:
        condition = query.where()
        result["total"] = session.scalar(select(func.count(Image.id)).where(condition)) or 0
        result["patients"] = session.scalar(select(func.count(func.distinct(Image.patient_key))).where(condition)) or 0
        for name, column in columns.items():
            rows = session.execute(select(column, func.count(Image.id)).where(condition).group_by(column))
            result[name] = {str(value) if value is not None else "unknown": count for value, count in rows}
        marking_rows = session.execute(select(Image.marking, func.count(Image.id)).where(condition).group_by(Image.marking))
        result["marking"] = {state or "unchecked": count for state, count in marking_rows}
    return result


def image_details(catalog: Catalog, image_id: int) -> dict[str, Any]:
    """Return an image's metadata, lineage both ways, detections and curator verdicts."""
    with catalog.session() as session:
        image = session.get(Image, image_id)
        if image is None:
            raise CatalogError(f"image {image_id} not found")
        parents = session.execute(
            select(Image.id, Image.label, Image.origin, Image.method, Lineage.role).join(Lineage, Lineage.parent_id == Image.id).where(Lineage.child_id == image_id).order_by(Image.id)
        ).all()
        children = session.execute(
            select(Image.id, Image.label, Image.origin, Image.method, Lineage.role).join(Lineage, Lineage.child_id == Image.id).where(Lineage.parent_id == image_id).order_by(Image.id)
        ).all()
        detections = session.execute(
            select(Detection, DetectionRun).join(DetectionRun, DetectionRun.id == Detection.run_id).where(Detection.image_id == image_id).order_by(Detection.id)
        ).all()
        verdicts = session.scalars(select(MarkingVerdict).where(MarkingVerdict.image_id == image_id).order_by(MarkingVerdict.id)).all()
        generator = session.get(Generator, image.generator_id) if image.generator_id else None
        fields = {column.name: getattr(image, column.key) for column in Image.__table__.columns}
        fields["created_at"] = image.created_at.isoformat() if image.created_at else None
        return {
            "image": fields,
            "marking": marking_state(image),
            "generator": {"id": generator.id, "name": generator.name} if generator else None,
            "parents": [dict(id=row[0], label=row[1], origin=row[2], method=row[3], role=row[4]) for row in parents],
            "children": [dict(id=row[0], label=row[1], origin=row[2], method=row[3], role=row[4]) for row in children],
            "detections": [
                {
                    "detector": run.detector,
                    "version": run.version,
                    "run": run.id,
                    "score": detection.score,
                    "flagged": detection.flagged,
                    "boxes": detection.boxes,
                    "at": detection.created_at.isoformat() if detection.created_at else None,
                }
                for detection, run in detections
            ],
            "verdicts": [
                {"marked": verdict.marked, "curator": verdict.curator, "boxes": verdict.boxes, "note": verdict.note, "at": verdict.created_at.isoformat() if verdict.created_at else None}
                for verdict in verdicts
            ],
        }


def set_verdicts(catalog: Catalog, ids: list[int], marked: bool | None, curator: str | None = None, boxes: list | None = None, note: str | None = None) -> dict[int, bool | None]:
    """Record the curator's marking verdict on images; return each image's previous verdict.

    ``marked=None`` clears the verdict so the detector's result counts again. The whole call is
    one transaction: an unknown id rejects all of it.
    """
    previous: dict[int, bool | None] = {}
    with catalog.transaction() as session:
        images = {image.id: image for image in session.scalars(select(Image).where(Image.id.in_(ids)))}
        missing = [str(image_id) for image_id in ids if image_id not in images]
        if missing:
            raise CatalogError(f"image not found: {', '.join(missing)}")
        for image_id in ids:
            image = images[image_id]
            previous[image_id] = image.marking_verdict
            image.marking_verdict = marked
            session.add(MarkingVerdict(image_id=image_id, marked=marked, curator=curator, boxes=boxes or [], note=note))
    return previous


def latest_boxes(session: Session, image_id: int) -> tuple[list, str] | None:
    """Return the newest painted-region boxes for an image: a curator's, else the detector's."""
    verdict = session.scalars(select(MarkingVerdict).where(MarkingVerdict.image_id == image_id).order_by(MarkingVerdict.id.desc()).limit(1)).first()
    if verdict is not None and verdict.marked and verdict.boxes:
        return verdict.boxes, "curator"
    from curator.detectors.markings import DETECTOR_NAME

    # Only the marking detector draws painted-region boxes; geometry checks store none.
    detection = session.scalars(
        select(Detection).join(DetectionRun, DetectionRun.id == Detection.run_id)
        .where(Detection.image_id == image_id, DetectionRun.detector == DETECTOR_NAME).order_by(Detection.id.desc()).limit(1)
    ).first()
    if detection is not None and detection.boxes:
        return detection.boxes, "detector"
    return None


@dataclass
class NewImage:
    """A derived or synthetic image to record, with its provenance."""

    pixels: np.ndarray
    origin: str
    method: str
    params: dict[str, Any]
    parents: list[tuple[int, str]]
    label: str | None = None
    label_source: str | None = None
    view: str | None = None
    view_source: str | None = None
    side: str | None = None
    side_source: str | None = None
    dataset: str = "curator"
    patient_key: str | None = None
    generator_id: int | None = None
    latent_path: str | None = None
    extra: dict[str, Any] | None = None


def store_new_image(session: Session, settings: Settings, new: NewImage, work_size: int = 128, fit: str = "stretch") -> tuple[Image, bool]:
    """Write a new image's PNG and working derivative to the store and add its row and lineage.

    Returns the row and whether it was new: identical pixels already catalogued give back the
    existing row and add nothing.
    """
    data = encode_png(new.pixels)
    sha256 = sha256_of_bytes(data)
    existing = session.scalars(select(Image).where(Image.sha256 == sha256)).first()
    if existing is not None:
        return existing, False
    file_relative = f"store/{sha256[:2]}/{sha256}.png"
    file_path = settings.home / file_relative
    if not file_path.exists():
        write_atomic(file_path, data)
    height, width = new.pixels.shape[:2]
    if new.pixels.shape[:2] == (work_size, work_size) and new.pixels.dtype == np.uint8:
        work_relative = file_relative
    else:
        work_relative = f"store/{sha256[:2]}/{sha256}-{work_size}.png"
        work_path = settings.home / work_relative
        if not work_path.exists():
            write_atomic(work_path, encode_png(working_copy(new.pixels, work_size, fit)))
    extra = dict(new.extra or {})
    extra.setdefault("work_size", work_size)
    extra.setdefault("work_fit", fit)
    image = Image(
        sha256=sha256,
        file_path=str(file_path),
        work_path=work_relative,
        file_size=len(data),
        width=int(width),
        height=int(height),
        bit_depth=16 if new.pixels.dtype == np.uint16 else 8,
        file_format="png",
        dataset=new.dataset,
        patient_key=new.patient_key,
        label=new.label,
        label_source=new.label_source,
        view=new.view,
        view_source=new.view_source,
        side=new.side,
        side_source=new.side_source,
        origin=new.origin,
        method=new.method,
        params=new.params,
        generator_id=new.generator_id,
        latent_path=new.latent_path,
        extra=extra,
        created_at=utcnow(),
    )
    session.add(image)
    session.flush()
    seen: set[tuple[int, str]] = set()
    for parent_id, role in new.parents:
        if (parent_id, role) in seen:
            continue
        seen.add((parent_id, role))
        session.add(Lineage(child_id=image.id, parent_id=parent_id, role=role))
    session.flush()
    return image, True


def work_pixels(settings: Settings, image: Image) -> np.ndarray:
    """Read an image's working-resolution derivative as a 2-D uint8 array."""
    from curator.imaging import read_work

    if not image.work_path:
        raise CatalogError(f"image {image.id} has no working derivative")
    path = Path(image.work_path)
    return read_work(path if path.is_absolute() else settings.home / path)


def ancestors(session: Session, image_ids: list[int]) -> dict[int, set[int]]:
    """Return every ancestor (through any lineage role) of each given image."""
    parents_of: dict[int, set[int]] = {}
    frontier = set(image_ids)
    seen: set[int] = set()
    while frontier:
        batch = list(frontier - seen)
        seen.update(batch)
        frontier = set()
        for start in range(0, len(batch), 500):
            chunk = batch[start : start + 500]
            for child, parent in session.execute(select(Lineage.child_id, Lineage.parent_id).where(Lineage.child_id.in_(chunk))):
                parents_of.setdefault(child, set()).add(parent)
                if parent not in seen:
                    frontier.add(parent)
    result: dict[int, set[int]] = {}
    for image_id in image_ids:
        found: set[int] = set()
        stack = list(parents_of.get(image_id, ()))
        while stack:
            parent = stack.pop()
            if parent in found:
                continue
            found.add(parent)
            stack.extend(parents_of.get(parent, ()))
        result[image_id] = found
    return result
