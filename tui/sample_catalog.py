"""A small catalog with fixed values, for the TUI's tests and snapshots: patients with CC and MLO
films, tiny PNG files in the store, detector scores and boxes, curator verdicts, and synthetic and
derived images with their lineage. Every value is fixed, so screens render the same way each time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from curator.db import Catalog
from curator.imaging import encode_png, sha256_of_bytes, write_atomic
from curator.models import Detection, DetectionRun, Image, Lineage, MarkingVerdict
from curator.settings import Settings

FIXED_TIME = dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone.utc)
FILM_WIDTH, FILM_HEIGHT = 48, 64
# The painted rectangle on a marked film, as [x, y, w, h] in film pixels.
MARKING_BOX = [30, 4, 12, 8]


@dataclass
class SampleCatalog:
    """The ids of what ``build_sample_catalog`` inserted, grouped by role."""

    original_ids: list[int] = field(default_factory=list)
    synthetic_ids: list[int] = field(default_factory=list)
    derived_ids: list[int] = field(default_factory=list)
    disputed_ids: list[int] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)


def film_pixels(index: int, marked: bool, side: str) -> np.ndarray:
    """Draw a tiny film: a bright half-disc against the chest wall, and the painted box when marked."""
    rows, columns = np.mgrid[0:FILM_HEIGHT, 0:FILM_WIDTH]
    wall_column = 0 if side == "LEFT" else FILM_WIDTH - 1
    distance = np.hypot((rows - FILM_HEIGHT / 2) / (FILM_HEIGHT / 2), (columns - wall_column) / (FILM_WIDTH * 0.7))
    pixels = np.where(distance < 1.0, 90 + 120 * (1.0 - distance), 12).astype(np.float64)
    pixels += (index * 7) % 30
    if marked:
        x, y, w, h = MARKING_BOX
        pixels[y : y + h, x : x + w] = 255
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    # Two corner pixels carry the index, so every film has its own SHA-256.
    pixels[-1, 0], pixels[-1, 1] = index % 256, index // 256
    return pixels


def _store_png(settings: Settings, pixels: np.ndarray) -> tuple[str, str, int]:
    data = encode_png(pixels)
    sha256 = sha256_of_bytes(data)
    relative = f"store/{sha256[:2]}/{sha256}.png"
    write_atomic(settings.home / relative, data)
    return sha256, relative, len(data)


def _image(settings: Settings, pixels: np.ndarray, **values) -> Image:
    sha256, relative, size = _store_png(settings, pixels)
    height, width = pixels.shape
    return Image(sha256=sha256, file_path=str(settings.home / relative), work_path=relative, file_size=size,
                 width=width, height=height, bit_depth=8, file_format="png", created_at=FIXED_TIME,
                 extra={"work_size": FILM_HEIGHT, "work_fit": "stretch"}, **values)


def build_sample_catalog(settings: Settings, catalog: Catalog, patients_per_label: int = 6) -> SampleCatalog:
    """Insert patients (normal and cancer) with a CC and an MLO film each, detections, verdicts and lineage."""
    built = SampleCatalog()
    with catalog.transaction() as session:
        run = DetectionRun(detector="white-marking", version="1", params_hash="sample", params={"threshold": 0.5}, created_at=FIXED_TIME)
        session.add(run)
        session.flush()

        index = 0
        for label in ("normal", "cancer"):
            for patient in range(patients_per_label):
                side = "LEFT" if patient % 2 == 0 else "RIGHT"
                for view in ("CC", "MLO"):
                    score = round(((index * 37) % 100) / 100, 2)
                    detected = score >= 0.5
                    # Every seventh film is one the curator judged against the detector.
                    verdict = (not detected) if index % 7 == 3 else None
                    image = _image(
                        settings, film_pixels(index, detected, side), dataset="sample",
                        patient_key=f"sample:{label}/{patient:04d}", case_id=f"{patient:04d}",
                        label=label, label_source="folder", view=view, view_source="file name", side=side,
                        side_source="file name", origin="original", marking_verdict=verdict,
                        marking_detected=detected, marking_score=score,
                    )
                    session.add(image)
                    session.flush()
                    session.add(Detection(run_id=run.id, image_id=image.id, score=score, flagged=detected,
                                          boxes=[MARKING_BOX] if detected else [], created_at=FIXED_TIME))
                    if verdict is not None:
                        session.add(MarkingVerdict(image_id=image.id, marked=verdict, curator="sample", created_at=FIXED_TIME))
                        built.disputed_ids.append(image.id)
                    built.original_ids.append(image.id)
                    built.scores[image.id] = score
                    index += 1

        parents = built.original_ids[:2]
        for number in range(2):
            synthetic = _image(settings, film_pixels(100 + number, False, "LEFT"), dataset="curator", label="normal",
                               view="CC", side="LEFT", origin="synthetic", method="sample",
                               params={"temperature": 0.7}, patient_key=None)
            session.add(synthetic)
            session.flush()
            session.add_all(Lineage(child_id=synthetic.id, parent_id=parent, role="parent") for parent in parents)
            built.synthetic_ids.append(synthetic.id)

        marked_parent = next(image_id for image_id in built.original_ids if built.scores[image_id] >= 0.5)
        derived = _image(settings, film_pixels(200, False, "LEFT"), dataset="curator", label="normal", view="CC",
                         side="LEFT", origin="derived", method="cleaned", params={"boxes": [MARKING_BOX]}, patient_key=None)
        session.add(derived)
        session.flush()
        session.add(Lineage(child_id=derived.id, parent_id=marked_parent, role="parent"))
        built.derived_ids.append(derived.id)
    return built
