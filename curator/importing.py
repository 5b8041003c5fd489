"""Cataloguing discovered images: hash, decode, write the working derivative, insert the rows.

Decoding runs in worker processes; the parent inserts rows in small committed batches, so an
import that is killed part way keeps what it committed, and running it again adds exactly the
missing rows (rows are keyed by the file's SHA-256 and files already catalogued under the same
path and size are not decoded again).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from curator.db import Catalog
from curator.imaging import UnreadableImage, decode_bytes, decode_jpeg_reduced, encode_png, sha256_of_bytes, working_copy, write_atomic
from curator.models import Image
from curator.settings import DEFAULT_WORK_SIZE, Settings
from curator.sources import Candidate, Discovery

BATCH_SIZE = 32


@dataclass
class ImportReport:
    """Counts and error lines of one import."""

    imported: int = 0
    already_present: int = 0
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Number of files or rows that could not be catalogued."""
        return len(self.failures)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready values."""
        return {
            "imported": self.imported,
            "already_present": self.already_present,
            "duplicates": self.duplicates,
            "skipped": dict(self.skipped),
            "failed": self.failed,
            "failures": list(self.failures),
        }


@dataclass(frozen=True)
class DecodeTask:
    """Input of a worker process: one file to decode and where to write its derivative."""

    index: int
    path: str
    dicom: bool
    store_dir: str
    work_size: int
    fit: str
    salt: bytes | None


def work_relative_path(sha256: str, work_size: int, fit: str) -> str:
    """Return the store path (relative to the data home) of an image's working derivative."""
    return f"store/{sha256[:2]}/{sha256}-{work_size}{'-pad' if fit == 'pad' else ''}.png"


def decode_task(task: DecodeTask) -> tuple[int, dict[str, Any] | None, str | None]:
    """Decode one file and write its working derivative; return (index, record, error line)."""
    try:
        data = Path(task.path).read_bytes()
    except OSError as error:
        return task.index, None, f"cannot read file: {error.strerror or error}"
    sha256 = sha256_of_bytes(data)
    name = task.path if not task.dicom or task.path.lower().endswith((".dcm", ".dicom")) else task.path + ".dcm"
    try:
        if Path(name).suffix.lower() in (".jpg", ".jpeg"):
            decoded = decode_jpeg_reduced(data, task.work_size)
        else:
            decoded = decode_bytes(data, name)
    except UnreadableImage as error:
        return task.index, None, str(error)
    relative = work_relative_path(sha256, task.work_size, task.fit)
    target = Path(task.store_dir).parent / relative
    if not target.exists():
        write_atomic(target, encode_png(working_copy(decoded.pixels, task.work_size, task.fit)))
    height, width = decoded.full_shape or decoded.pixels.shape
    record: dict[str, Any] = {
        "sha256": sha256,
        "file_size": len(data),
        "width": int(width),
        "height": int(height),
        "bit_depth": decoded.bit_depth,
        "file_format": decoded.file_format,
        "work_path": relative,
    }
    if decoded.dicom is not None:
        from curator.dicom import hashed_patient_key

        metadata = dict(decoded.dicom)
        identity = metadata.pop("identity", None)
        if identity and task.salt is not None:
            record["patient_key"] = hashed_patient_key(identity, task.salt)
        record["dicom"] = metadata
    return task.index, record, None


def _known_files(catalog: Catalog, candidates: list[Candidate]) -> dict[str, int]:
    paths = [str(candidate.path) for candidate in candidates]
    known: dict[str, int] = {}
    with catalog.session() as session:
        for start in range(0, len(paths), 500):
            chunk = paths[start : start + 500]
            for file_path, file_size in session.execute(select(Image.file_path, Image.file_size).where(Image.file_path.in_(chunk))):
                known[file_path] = file_size
    return known


def _image_row(candidate: Candidate, record: dict[str, Any], work_size: int, fit: str) -> Image:
    extra = dict(candidate.extra)
    extra["work_size"] = work_size
    extra["work_fit"] = fit
    view, view_source = candidate.view, candidate.view_source
    side, side_source = candidate.side, candidate.side_source
    dicom = record.get("dicom")
    if dicom:
        extra["dicom"] = {key: value for key, value in dicom.items() if key not in ("view", "side")}
        if view is None and dicom.get("view"):
            view, view_source = dicom["view"], "DICOM ViewPosition"
        if side is None and dicom.get("side"):
            side, side_source = dicom["side"], "DICOM laterality"
    return Image(
        sha256=record["sha256"],
        file_path=str(candidate.path),
        work_path=record["work_path"],
        file_size=record["file_size"],
        width=record["width"],
        height=record["height"],
        bit_depth=record["bit_depth"],
        file_format=record["file_format"],
        dataset=candidate.dataset,
        patient_key=record.get("patient_key") or candidate.patient_key,
        case_id=candidate.case_id,
        label=candidate.label,
        label_source=candidate.label_source,
        view=view,
        view_source=view_source,
        side=side,
        side_source=side_source,
        origin="original",
        params={},
        extra=extra,
    )


def _insert_batch(catalog: Catalog, batch: list[tuple[Candidate, dict[str, Any]]], report: ImportReport, work_size: int, fit: str) -> None:
    if not batch:
        return
    with catalog.transaction() as session:
        hashes = [record["sha256"] for _, record in batch]
        existing = set(session.scalars(select(Image.sha256).where(Image.sha256.in_(hashes))))
        added: list[Image] = []
        for candidate, record in batch:
            if record["sha256"] in existing:
                report.duplicates += 1
                continue
            existing.add(record["sha256"])
            row = _image_row(candidate, record, work_size, fit)
            session.add(row)
            added.append(row)
        session.flush()
        report.image_ids.extend(row.id for row in added)
        report.imported += len(added)


def run_import(
    catalog: Catalog,
    settings: Settings,
    discovery: Discovery,
    *,
    work_size: int = DEFAULT_WORK_SIZE,
    fit: str = "stretch",
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Catalog every candidate of a discovery; return the counts and one line per failure."""
    report = ImportReport(skipped=Counter(discovery.skipped), failures=list(discovery.failures))
    candidates = discovery.candidates
    known = _known_files(catalog, candidates)
    pending: list[Candidate] = []
    for candidate in candidates:
        size = known.get(str(candidate.path))
        if size is not None and candidate.path.exists() and candidate.path.stat().st_size == size:
            report.already_present += 1
        else:
            pending.append(candidate)
    total = len(candidates)
    done = report.already_present
    if on_progress:
        on_progress(done, total)

    salt = None
    if any(candidate.dataset == "dicom" for candidate in pending):
        from curator.dicom import load_salt

        salt = load_salt(settings.home)
    tasks = [
        DecodeTask(index, str(candidate.path), candidate.dataset == "dicom", str(settings.store_dir), work_size, fit, salt)
        for index, candidate in enumerate(pending)
    ]
    settings.store_dir.mkdir(parents=True, exist_ok=True)
    batch: list[tuple[Candidate, dict[str, Any]]] = []
    for index, record, error in _map_tasks(tasks, workers):
        candidate = pending[index]
        done += 1
        if error is not None:
            report.failures.append(f"{candidate.where()}: {error}" if candidate.reference else f"{candidate.path}: {error}")
        else:
            batch.append((candidate, record))
            if len(batch) >= BATCH_SIZE:
                _insert_batch(catalog, batch, report, work_size, fit)
                batch = []
        if on_progress:
            on_progress(done, total)
    _insert_batch(catalog, batch, report, work_size, fit)
    return report


def _map_tasks(tasks: list[DecodeTask], workers: int | None) -> Iterable[tuple[int, dict[str, Any] | None, str | None]]:
    count = workers if workers is not None else min(len(tasks), os.cpu_count() or 1)
    if count <= 1 or len(tasks) < 4:
        for task in tasks:
            yield decode_task(task)
        return
    context = multiprocessing.get_context("spawn" if os.name == "nt" else "forkserver")
    with context.Pool(count) as pool:
        yield from pool.imap_unordered(decode_task, tasks, chunksize=2)
