"""Builders for split, export and evaluation tests: catalog rows inserted directly, with small
working-resolution PNGs when a test reads pixels. Imported by the other ``test_splits_*``,
``test_export_*`` and ``test_evaluate_cli_*`` modules; the checks at the end pin the builders down.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from curator.db import Catalog
from curator.models import Generator, GeneratorImage, Image, Lineage, SplitMember
from curator.settings import Settings

_counter = itertools.count(1)


def add_image(
    session: Session,
    label: str | None,
    *,
    patient: str | None = None,
    view: str | None = "CC",
    side: str | None = "LEFT",
    origin: str = "original",
    method: str | None = None,
    generator_id: int | None = None,
    settings: Settings | None = None,
    work_size: int = 16,
    brightness: int | None = None,
) -> int:
    """Insert one image row; with ``settings``, also write a working PNG whose mean is ``brightness``."""
    number = next(_counter)
    sha256 = hashlib.sha256(f"image-{number}-{label}-{patient}".encode()).hexdigest()
    work_path = None
    if settings is not None:
        rng = np.random.default_rng(number)
        level = brightness if brightness is not None else int(rng.integers(30, 220))
        pixels = np.clip(rng.normal(level, 6.0, (work_size, work_size)), 0, 255).astype(np.uint8)
        work_path = f"store/{sha256[:2]}/{sha256}-{work_size}.png"
        target = settings.home / work_path
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), pixels)
    image = Image(
        sha256=sha256, file_path=f"/data/{sha256}.png", work_path=work_path, file_size=100, width=work_size,
        height=work_size, file_format="png", dataset="test", patient_key=patient, label=label, view=view,
        side=side, origin=origin, method=method, params={}, generator_id=generator_id, extra={"work_size": work_size},
    )
    session.add(image)
    session.flush()
    return image.id


def link(session: Session, child: int, parent: int, role: str = "parent") -> None:
    """Record that ``child`` was made from ``parent``."""
    session.add(Lineage(child_id=child, parent_id=parent, role=role))
    session.flush()


def add_generator(session: Session, name: str, train: list[int], heldout: list[int] = ()) -> int:
    """Insert a generator with its training and held-out images."""
    generator = Generator(name=name, kind="glow", query="test", output_dir="/tmp/none", status="done")
    session.add(generator)
    session.flush()
    for image_id in train:
        session.add(GeneratorImage(generator_id=generator.id, image_id=image_id, role="train"))
    for image_id in heldout:
        session.add(GeneratorImage(generator_id=generator.id, image_id=image_id, role="heldout"))
    session.flush()
    return generator.id


def add_patients(session: Session, label: str, patients: int, *, prefix: str | None = None, views: tuple[str, ...] = ("CC", "MLO"),
                 settings: Settings | None = None, brightness: int | None = None) -> dict[str, list[int]]:
    """Insert ``patients`` patients of one label, each with one image per view and breast side."""
    made: dict[str, list[int]] = {}
    for index in range(patients):
        key = f"{prefix or label}/{index:03d}"
        made[key] = [
            add_image(session, label, patient=key, view=view, side=side, settings=settings, brightness=brightness)
            for view in views for side in ("LEFT", "RIGHT")
        ]
    return made


def sides_of(catalog: Catalog, split_id: int) -> dict[int, str]:
    """Return image id -> side for a stored split."""
    with catalog.session() as session:
        return dict(session.execute(select(SplitMember.image_id, SplitMember.side).where(SplitMember.split_id == split_id)).all())


def test_add_patients_covers_views_and_sides(sqlite_catalog: Catalog) -> None:
    with sqlite_catalog.transaction() as session:
        made = add_patients(session, "normal", 2)
        rows = session.execute(select(Image.patient_key, Image.view, Image.side)).all()
    assert sorted(made) == ["normal/000", "normal/001"]
    assert len(rows) == 8
    assert {(view, side) for key, view, side in rows if key == "normal/001"} == {("CC", "LEFT"), ("CC", "RIGHT"), ("MLO", "LEFT"), ("MLO", "RIGHT")}


def test_add_image_writes_working_png_with_requested_brightness(sqlite_catalog: Catalog, sqlite_settings: Settings) -> None:
    with sqlite_catalog.transaction() as session:
        image_id = add_image(session, "cancer", settings=sqlite_settings, brightness=200)
        work_path = session.get(Image, image_id).work_path
    pixels = cv2.imread(str(Path(sqlite_settings.home) / work_path), cv2.IMREAD_GRAYSCALE)
    assert pixels.shape == (16, 16)
    assert abs(float(pixels.mean()) - 200) < 5
