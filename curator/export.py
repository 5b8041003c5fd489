"""Export a stored split for training elsewhere: a class-per-folder PNG tree, a CSV manifest, or
NumPy arrays, all at working resolution.

Everything is written into a temporary folder next to the target and renamed into place at the
end, so an interrupted export leaves no half-written target behind. File names come from the
catalog (image id and SHA-256), never from text a user typed.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from curator.catalog import work_pixels
from curator.db import Catalog, CatalogError
from curator.models import Image, Lineage
from curator.settings import Settings
from curator.splits import generator_names, get_split, split_members

log = logging.getLogger(__name__)

FORMATS = ("keras", "csv", "npz")
MANIFEST_NAME = "manifest.csv"
ARRAYS_NAME = "arrays.npz"
# Written into every export; --overwrite replaces only folders that contain it.
EXPORT_MARKER = ".curator-export"
MANIFEST_COLUMNS = ("image_id", "path", "split", "label", "view", "side", "origin", "method", "parents", "generator", "sha256")
# Labels become folder names, so only plain words may pass.
SAFE_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class ExportError(CatalogError):
    """An export cannot start or finish; the message names the folder or image at fault."""


@dataclass
class ExportReport:
    """Summary of a finished export: folder, format, files written and images per side and label."""

    directory: Path
    format: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    files: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        return {"directory": str(self.directory), "format": self.format, "counts": self.counts, "files": self.files}


@dataclass
class _Row:
    image: Image
    split_side: str
    parents: str
    generator: str


def image_file_name(image: Image) -> str:
    """Return the exported file name of an image: ``<id>-<first 12 hex digits of its SHA-256>.png``."""
    return f"{image.id}-{image.sha256[:12]}.png"


def _check_target(directory: Path, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"{directory} exists and is not a folder")
    if directory.is_dir() and any(directory.iterdir()):
        if not overwrite:
            raise ExportError(f"{directory} is not empty; choose an empty folder or pass --overwrite to replace it")
        # Replacing a folder deletes it, so only an earlier export may be replaced.
        if not (directory / EXPORT_MARKER).is_file():
            raise ExportError(f"{directory} has no {EXPORT_MARKER} file, so it is not an earlier curator export; "
                              "--overwrite only replaces earlier exports, so choose an empty folder")
    if not directory.parent.is_dir():
        raise ExportError(f"the parent folder {directory.parent} does not exist")


def _rows(session: Session, split_name: str) -> list[_Row]:
    split = get_split(session, split_name)
    members = split_members(session, split)
    ids = [image.id for image, _ in members]
    parents: dict[int, list[str]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for child, parent, role in session.execute(
            select(Lineage.child_id, Lineage.parent_id, Lineage.role).where(Lineage.child_id.in_(chunk)).order_by(Lineage.parent_id)
        ):
            parents.setdefault(child, []).append(str(parent) if role == "parent" else f"{parent}:{role}")
    names = generator_names(session, [image.generator_id for image, _ in members if image.generator_id is not None])
    rows = []
    for image, side in members:
        if image.label is None or not SAFE_LABEL.match(image.label):
            raise ExportError(f"image {image.id} has label {image.label!r}, which cannot be a folder name")
        generator = names.get(image.generator_id, str(image.generator_id)) if image.generator_id is not None else ""
        rows.append(_Row(image, side, ";".join(parents.get(image.id, [])), generator))
    return rows


def _work_file(settings: Settings, image: Image) -> Path:
    if not image.work_path:
        raise ExportError(f"image {image.id} has no working derivative; re-import it")
    path = Path(image.work_path)
    return path if path.is_absolute() else settings.home / path


def _inside(root: Path, relative: str) -> Path:
    """Join a relative path to ``root`` and make sure the result stays inside it."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ExportError(f"refusing to write {relative!r} outside the export folder")
    return target


def _manifest_text(rows: list[_Row], path_of: Callable[[_Row], str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for row in rows:
        image = row.image
        writer.writerow([image.id, path_of(row), row.split_side, image.label, image.view or "", image.side or "",
                         image.origin, image.method or "", row.parents, row.generator, image.sha256])
    return buffer.getvalue()


def _write_keras(root: Path, settings: Settings, rows: list[_Row], on_progress: Callable[[int, int], None] | None) -> int:
    for index, row in enumerate(rows, start=1):
        relative = f"{row.split_side}/{row.image.label}/{image_file_name(row.image)}"
        target = _inside(root, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = _work_file(settings, row.image)
        if not source.is_file():
            raise ExportError(f"working derivative of image {row.image.id} is missing: {source}")
        shutil.copyfile(source, target)
        if on_progress is not None:
            on_progress(index, len(rows))
    (root / MANIFEST_NAME).write_text(
        _manifest_text(rows, lambda row: f"{row.split_side}/{row.image.label}/{image_file_name(row.image)}"), encoding="utf-8"
    )
    return len(rows) + 1


def _write_csv(root: Path, settings: Settings, rows: list[_Row]) -> int:
    (root / MANIFEST_NAME).write_text(_manifest_text(rows, lambda row: str(_work_file(settings, row.image))), encoding="utf-8")
    return 1


def _write_npz(root: Path, settings: Settings, rows: list[_Row], on_progress: Callable[[int, int], None] | None) -> int:
    class_names = sorted({row.image.label for row in rows})
    arrays: dict[str, np.ndarray] = {"class_names": np.array(class_names)}
    shape: tuple[int, ...] | None = None
    done = 0
    for side in ("train", "val", "test"):
        side_rows = [row for row in rows if row.split_side == side]
        pixels = []
        for row in side_rows:
            image_pixels = work_pixels(settings, row.image)
            if shape is None:
                shape = image_pixels.shape
            elif image_pixels.shape != shape:
                raise ExportError(f"image {row.image.id} has working size {image_pixels.shape}, others {shape}; "
                                  "arrays need one size (re-import with one --work-size)")
            pixels.append(image_pixels)
            done += 1
            if on_progress is not None:
                on_progress(done, len(rows))
        height, width = shape if shape is not None else (0, 0)
        arrays[f"x_{side}"] = np.stack(pixels) if pixels else np.zeros((0, height, width), dtype=np.uint8)
        arrays[f"y_{side}"] = np.array([class_names.index(row.image.label) for row in side_rows], dtype=np.int64)
        arrays[f"ids_{side}"] = np.array([row.image.id for row in side_rows], dtype=np.int64)
    np.savez_compressed(root / ARRAYS_NAME, **arrays)
    return 1


def export_split(
    catalog: Catalog,
    settings: Settings,
    split_name: str,
    directory: Path,
    export_format: str = "keras",
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Write a split's images to ``directory`` in one of ``FORMATS``.

    keras: ``train/``, ``val/`` and ``test/`` folders with one folder per label (as Keras'
    ``image_dataset_from_directory`` and torchvision's ``ImageFolder`` read them) and a
    ``manifest.csv`` with paths relative to ``directory``. csv: only ``manifest.csv``, pointing
    at the working derivatives in the data home. npz: ``arrays.npz`` holding ``x_<side>``
    (uint8, N x H x W), ``y_<side>`` (index into ``class_names``) and ``ids_<side>``.
    A non-empty ``directory`` is replaced only with ``overwrite``.
    """
    if export_format not in FORMATS:
        raise ExportError(f"unknown export format {export_format!r}; expected one of {', '.join(FORMATS)}")
    directory = Path(directory).absolute()
    _check_target(directory, overwrite)
    with catalog.session() as session:
        rows = _rows(session, split_name)

    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.export-", dir=directory.parent))
    try:
        if export_format == "keras":
            files = _write_keras(staging, settings, rows, on_progress)
        elif export_format == "csv":
            files = _write_csv(staging, settings, rows)
        else:
            files = _write_npz(staging, settings, rows, on_progress)
        _replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        per_label = counts.setdefault(row.split_side, {})
        per_label[row.image.label] = per_label.get(row.image.label, 0) + 1
    log.info("exported split %s (%d images) as %s to %s", split_name, len(rows), export_format, directory)
    return ExportReport(directory=directory, format=export_format, counts=counts, files=files)


def _replace(staging: Path, directory: Path) -> None:
    """Move the finished staging folder to ``directory``, putting any old one aside until it succeeds."""
    (staging / EXPORT_MARKER).write_text("written by curator export; curator export --overwrite may replace this folder\n")
    os.chmod(staging, 0o755)
    if not directory.exists():
        staging.rename(directory)
        return
    previous = Path(tempfile.mkdtemp(prefix=f".{directory.name}.previous-", dir=directory.parent))
    previous.rmdir()
    directory.rename(previous)
    try:
        staging.rename(directory)
    except BaseException:
        previous.rename(directory)
        raise
    shutil.rmtree(previous, ignore_errors=True)
