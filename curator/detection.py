"""Running the image detectors over catalog queries and recording what they find.

Marking detection stores one ``DetectionRun`` per detector version and parameter set, and one
``Detection`` per image in it, so re-running the same version adds nothing and a new version adds
a new run. The newest result is mirrored on the image for queries; the curator's verdict is kept
apart and always wins. Geometry checks and paint-out work on the same queries.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from curator.db import Catalog, CatalogError
from curator.imaging import UnreadableImage, read_gray, to_uint8
from curator.models import Detection, DetectionRun, Image
from curator.query import Query
from curator.settings import Settings

BATCH_SIZE = 32
GEOMETRY_NAME = "geometry"
GEOMETRY_VERSION = "1"
FAST_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".tif", ".tiff")


def params_hash(params: dict[str, Any]) -> str:
    """Return a stable hash of detector parameters, for recognising a repeated run."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def load_for_detector(path: str, working_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Load a film at detection size: reduced JPEG decoding when possible, any format otherwise."""
    from curator.detectors.breast import load_for_detection, working_copy

    if Path(path).suffix.lower() in FAST_SUFFIXES:
        try:
            return load_for_detection(path, working_size)
        except (ValueError, OSError):
            pass
    pixels = to_uint8(read_gray(Path(path)))
    return working_copy(pixels, working_size), pixels.shape


@dataclass
class DetectionSummary:
    """Counts of one marking-detection command."""

    run_id: int
    detector: str
    version: str
    threshold: float
    examined: int = 0
    already_done: int = 0
    flagged: int = 0
    failures: list[str] = field(default_factory=list)


def _detect_one(task: tuple[int, str, float, dict[str, Any]]) -> tuple[int, dict[str, Any] | None, str | None]:
    from curator.detectors.markings import MarkingParams, detect_markings

    image_id, path, threshold, params_dict = task
    params = MarkingParams(**{key: tuple(value) if isinstance(value, list) else value for key, value in params_dict.items()})
    try:
        work, full_shape = load_for_detector(path, params.working_size)
    except (UnreadableImage, ValueError, OSError) as error:
        return image_id, None, str(error).splitlines()[0]
    result = detect_markings(work, threshold=threshold, params=params, full_shape=full_shape)
    return image_id, result.to_dict(), None


def _pool_map(function: Callable, tasks: list, workers: int | None) -> Iterable:
    count = workers if workers else min(len(tasks), os.cpu_count() or 1)
    if count <= 1 or len(tasks) < 4:
        yield from map(function, tasks)
        return
    with multiprocessing.get_context("forkserver").Pool(count) as pool:
        yield from pool.imap_unordered(function, tasks, chunksize=2)


def detection_run(catalog: Catalog, detector: str, version: str, params: dict[str, Any]) -> int:
    """Return the id of the run for this detector version and parameters, creating it if new."""
    digest = params_hash(params)
    with catalog.transaction() as session:
        run = session.scalars(
            select(DetectionRun).where(DetectionRun.detector == detector, DetectionRun.version == version, DetectionRun.params_hash == digest)
        ).first()
        if run is None:
            run = DetectionRun(detector=detector, version=version, params_hash=digest, params=params)
            session.add(run)
            session.flush()
        return run.id


def detect_markings_in_catalog(
    catalog: Catalog,
    query: Query,
    threshold: float | None = None,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> DetectionSummary:
    """Run the white-marking detector on every image a query selects that this run has not seen."""
    from curator.detectors.markings import DEFAULT_THRESHOLD, DETECTOR_NAME, DETECTOR_VERSION, MarkingParams

    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    params = MarkingParams().to_dict()
    run_id = detection_run(catalog, DETECTOR_NAME, DETECTOR_VERSION, {**params, "threshold": threshold})
    summary = DetectionSummary(run_id=run_id, detector=DETECTOR_NAME, version=DETECTOR_VERSION, threshold=threshold)

    with catalog.session() as session:
        selected = session.execute(select(Image.id, Image.file_path).where(query.where()).order_by(Image.id)).all()
        done = set(session.scalars(select(Detection.image_id).where(Detection.run_id == run_id)))
    todo = [(image_id, path) for image_id, path in selected if image_id not in done]
    summary.already_done = len(selected) - len(todo)
    total = len(selected)
    if on_progress:
        on_progress(summary.already_done, total)

    tasks = [(image_id, path, threshold, params) for image_id, path in todo]
    batch: list[tuple[int, dict[str, Any]]] = []
    finished = summary.already_done
    for image_id, result, error in _pool_map(_detect_one, tasks, workers):
        finished += 1
        if error is not None:
            summary.failures.append(f"image {image_id}: {error}")
        else:
            batch.append((image_id, result))
            if len(batch) >= BATCH_SIZE:
                _store_detections(catalog, run_id, batch, summary)
                batch = []
        if on_progress:
            on_progress(finished, total)
    _store_detections(catalog, run_id, batch, summary)
    return summary


def _store_detections(catalog: Catalog, run_id: int, batch: list[tuple[int, dict[str, Any]]], summary: DetectionSummary) -> None:
    if not batch:
        return
    with catalog.transaction() as session:
        images = {image.id: image for image in session.scalars(select(Image).where(Image.id.in_([image_id for image_id, _ in batch])))}
        for image_id, result in batch:
            details = {key: result[key] for key in ("chest_wall", "candidates", "full_shape", "working_shape", "threshold")}
            session.add(Detection(run_id=run_id, image_id=image_id, score=float(result["score"]), flagged=bool(result["marked"]), boxes=result["boxes"], details=details))
            image = images[image_id]
            # The mirror follows the newest detection; the curator's verdict column is never touched.
            image.marking_detected = bool(result["marked"])
            image.marking_score = float(result["score"])
            summary.examined += 1
            summary.flagged += int(bool(result["marked"]))


@dataclass
class GeometryRow:
    """Geometry check of one catalogued image."""

    image_id: int
    path: str
    dataset: str
    side: str | None
    view: str | None
    chest_wall: str
    expected_chest_wall: str | None
    side_agrees: bool | None
    view_guess: str
    view_score: float
    view_agrees: bool | None


def _geometry_one(task: tuple[int, str, str, str | None, str | None, str | None]) -> tuple[int, dict[str, Any] | None, str | None]:
    from curator.detectors.geometry import check_geometry, ddsm_scanner

    image_id, path, dataset, side, view, scanner = task
    try:
        work, _ = load_for_detector(path, 512)
    except (UnreadableImage, ValueError, OSError) as error:
        return image_id, None, str(error).splitlines()[0]
    scanner = scanner or ddsm_scanner(Path(path).name)
    result = check_geometry(work, side, view, dataset, scanner)
    return image_id, result.to_dict(), None


def check_geometry_in_catalog(
    catalog: Catalog, query: Query, workers: int | None = None, on_progress: Callable[[int, int], None] | None = None, record: bool = True
) -> tuple[list[GeometryRow], list[str]]:
    """Check chest-wall side and view of every selected original; record each as a detection."""
    with catalog.session() as session:
        selected = session.execute(
            select(Image.id, Image.file_path, Image.dataset, Image.side, Image.view, Image.extra).where(query.where(), Image.origin == "original").order_by(Image.id)
        ).all()
    tasks = [(row[0], row[1], row[2], row[3], row[4], (row[5] or {}).get("scanner")) for row in selected]
    by_id = {row[0]: row for row in selected}
    rows: list[GeometryRow] = []
    failures: list[str] = []
    for done, (image_id, result, error) in enumerate(_pool_map(_geometry_one, tasks, workers), start=1):
        if error is not None:
            failures.append(f"image {image_id}: {error}")
        else:
            row = by_id[image_id]
            rows.append(GeometryRow(image_id=image_id, path=row[1], dataset=row[2], side=row[3], view=row[4], **result))
        if on_progress:
            on_progress(done, len(tasks))
    rows.sort(key=lambda item: item.image_id)
    if record and rows:
        run_id = detection_run(catalog, GEOMETRY_NAME, GEOMETRY_VERSION, {})
        with catalog.transaction() as session:
            seen = set(session.scalars(select(Detection.image_id).where(Detection.run_id == run_id)))
            for row in rows:
                if row.image_id in seen:
                    continue
                disagrees = row.side_agrees is False or row.view_agrees is False
                details = {key: getattr(row, key) for key in ("chest_wall", "expected_chest_wall", "side_agrees", "view_guess", "view_score", "view_agrees")}
                session.add(Detection(run_id=run_id, image_id=row.image_id, score=row.view_score, flagged=disagrees, boxes=[], details=details))
    return rows, failures


def paint_out_image(settings: Settings, image: Image, boxes: list[list[int]]) -> np.ndarray:
    """Return the full-resolution film of an image with the painted boxes filled in."""
    from curator.detectors.paintout import paint_out

    pixels = to_uint8(read_gray(Path(image.file_path)))
    return paint_out(pixels, [tuple(box) for box in boxes])


def require_original(image: Image) -> None:
    """Reject images whose file is not a film on disk."""
    if not Path(image.file_path).exists():
        raise CatalogError(f"image {image.id}: file not found: {image.file_path}")
