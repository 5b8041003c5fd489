"""The TUI's service layer: the only place where screens reach the catalog.

Each method opens a short session through ``curator``'s API and returns plain dataclasses, so
screens never keep ORM objects. Every write is committed at once: a flag survives a crash, and no
lock stays open while the curator looks at the screen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from curator.catalog import count_images, image_details, set_verdicts
from curator.db import Catalog, CatalogError
from curator.imaging import UnreadableImage, read_gray, read_work, to_uint8
from curator.models import DetectionRun, Detection, Image, MarkingVerdict
from curator.query import Query, QueryError, parse
from curator.settings import Settings

if TYPE_CHECKING:
    from curator.splits import SplitPlan, SplitSpec

MARKING_DETECTOR = "white-marking"
log = logging.getLogger(__name__)

PAGE_SIZE = 200
# Score at which the marking detector calls an image marked (its DEFAULT_THRESHOLD). The review of
# uncertain images walks the unreviewed ones whose score lies closest to it.
DETECTOR_THRESHOLD = 0.5
REVIEW_LIMIT = 1000
VERDICT_WORDS: dict[bool | None, str] = {True: "marked", False: "unmarked", None: "-"}


@dataclass(frozen=True)
class QueryCount:
    """The outcome of counting a query as typed: the parsed query and its count, or the parse error."""

    text: str
    query: Query | None = None
    count: int | None = None
    error: str | None = None

    @property
    def canonical(self) -> str:
        """The query printed in canonical form; empty for an error or the match-all query."""
        return str(self.query) if self.query is not None else ""


@dataclass(frozen=True)
class ImageRow:
    """One line of the browse table."""

    id: int
    label: str | None
    view: str | None
    side: str | None
    origin: str
    method: str | None
    verdict: bool | None
    detected: bool | None
    score: float | None

    @property
    def marking(self) -> str:
        """``marked``, ``unmarked`` or ``unchecked``, with the curator's verdict winning."""
        decided = self.verdict if self.verdict is not None else self.detected
        if decided is None:
            return "unchecked"
        return "marked" if decided else "unmarked"


@dataclass(frozen=True, eq=False)
class PreviewSource:
    """Pixels to show for one image and the regions to outline on them.

    ``boxes`` and ``curator_boxes`` are ``[x, y, w, h]`` in the coordinates of ``pixels``. Two
    sources compare by identity, so a reactive attribute holding one never compares arrays.
    """

    pixels: np.ndarray
    boxes: list[list[float]] = field(default_factory=list)
    curator_boxes: list[list[float]] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class FlagChange:
    """One verdict the curator set from the TUI, with the verdict it replaced (for undo)."""

    image_id: int
    previous: bool | None
    marked: bool | None


@dataclass
class ReviewQueue:
    """Images to decide one after another, and where the curator is in the walk."""

    kind: str
    image_ids: list[int]
    position: int = 0
    decided: int = 0

    @property
    def current(self) -> int | None:
        """The image to decide now, or None when the walk is over."""
        return self.image_ids[self.position] if self.position < len(self.image_ids) else None

    def advance(self) -> int | None:
        """Move to the next image and return it (None past the end)."""
        self.position = min(self.position + 1, len(self.image_ids))
        return self.current

    def go_back_to(self, image_id: int) -> bool:
        """Return to an earlier image of the walk (after an undo); False when it is not in the queue."""
        if image_id not in self.image_ids:
            return False
        self.position = self.image_ids.index(image_id)
        return True

    def describe(self) -> str:
        """Return a one-line progress text such as ``review uncertain: 3 of 40, 2 decided``."""
        if self.current is None:
            return f"review {self.kind} finished: {self.decided} decided of {len(self.image_ids)}"
        return f"review {self.kind}: {self.position + 1} of {len(self.image_ids)}, {self.decided} decided"


class CuratorServices:
    """Catalog reads and writes for the screens, plus the undo history of this session's flags."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None, curator: str | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog(settings.database_url)
        self.curator = curator
        self.flag_history: list[FlagChange] = []
        # Every image whose verdict this session wrote, in order, so screens can refresh their rows.
        self.touched: list[int] = []

    # Queries and the browse table.

    def count(self, text: str) -> QueryCount:
        """Parse query words and count the matches; an unknown word returns the parser's message."""
        try:
            query = parse(text)
        except QueryError as error:
            return QueryCount(text=text, error=str(error))
        return QueryCount(text=text, query=query, count=count_images(self.catalog, query))

    def page(self, query: Query, offset: int = 0, limit: int = PAGE_SIZE, after_id: int | None = None) -> list[ImageRow]:
        """Return ``limit`` matching images in id order, from result position ``offset``.

        When the caller knows the last id of the page before (``after_id``), the page is read
        with keyset paging (``id > after_id``), which costs the same at any depth; OFFSET has to
        step over every earlier match.
        """
        statement = select(Image.id, Image.label, Image.view, Image.side, Image.origin, Image.method,
                           Image.marking_verdict, Image.marking_detected, Image.marking_score).where(query.where())
        if after_id is not None:
            statement = statement.where(Image.id > after_id)
        elif offset:
            statement = statement.offset(offset)
        statement = statement.order_by(Image.id).limit(limit)
        with self.catalog.session() as session:
            return [ImageRow(*row) for row in session.execute(statement)]

    def row(self, image_id: int) -> ImageRow | None:
        """Return the browse-table line of one image, or None when it no longer exists."""
        rows = self.page(parse(f"id:{image_id}"), limit=1)
        return rows[0] if rows else None

    # One image.

    def details(self, image_id: int) -> dict[str, Any]:
        """Return an image's metadata, lineage, detections and verdicts (``curator show``'s data)."""
        return image_details(self.catalog, image_id)

    def preview(self, image_id: int, max_side: int = 512) -> PreviewSource:
        """Load an image for display with the newest detector boxes and the curator's boxes.

        The original file is read when it is there, so the preview keeps the film's aspect ratio
        and the full-resolution boxes fit it. Without it, the square working derivative is shown.
        """
        with self.catalog.session() as session:
            image = session.get(Image, image_id)
            if image is None:
                raise CatalogError(f"image {image_id} not found")
            detection = session.scalars(
                select(Detection).join(DetectionRun, DetectionRun.id == Detection.run_id)
                .where(Detection.image_id == image_id, DetectionRun.detector == MARKING_DETECTOR).order_by(Detection.id.desc()).limit(1)
            ).first()
            verdict = session.scalars(
                select(MarkingVerdict).where(MarkingVerdict.image_id == image_id).order_by(MarkingVerdict.id.desc()).limit(1)
            ).first()
            file_path, work_path = Path(image.file_path), image.work_path
            full_width, full_height, fit = image.width, image.height, (image.extra or {}).get("work_fit", "stretch")
            boxes = [list(box) for box in detection.boxes] if detection is not None else []
            curator_boxes = [list(box) for box in verdict.boxes] if verdict is not None and verdict.marked else []

        pixels, note = self._read_pixels(file_path, work_path)
        height, width = pixels.shape
        if (height, width) == (full_height, full_width):
            scale_x = scale_y = 1.0
        elif fit == "stretch":
            scale_x, scale_y = width / full_width, height / full_height
        else:
            # NOTE: a padded working derivative's offset depends on the chest-wall side, which is
            # not stored, so boxes are not drawn on it.
            return PreviewSource(pixels=_shrink(pixels, max_side), note=f"{note}; boxes are not drawn on a padded derivative")
        shrunk = _shrink(pixels, max_side)
        factor = shrunk.shape[0] / height
        scale_x, scale_y = scale_x * factor, scale_y * factor
        return PreviewSource(
            pixels=shrunk,
            boxes=[_scale_box(box, scale_x, scale_y) for box in boxes],
            curator_boxes=[_scale_box(box, scale_x, scale_y) for box in curator_boxes],
            note=note,
        )

    def _read_pixels(self, file_path: Path, work_path: str | None) -> tuple[np.ndarray, str | None]:
        problem = "original file missing"
        if file_path.exists():
            try:
                return to_uint8(read_gray(file_path)), None
            except UnreadableImage as error:
                log.warning("cannot read %s for the preview (%s); showing the working derivative", file_path, error)
                problem = "original file unreadable"
        if not work_path:
            raise CatalogError(f"{problem} ({file_path}) and no working derivative to show instead")
        path = Path(work_path)
        path = path if path.is_absolute() else self.settings.home / path
        try:
            return read_work(path), f"{problem}: showing the working derivative"
        except UnreadableImage as error:
            raise CatalogError(f"{problem} ({file_path}) and {error}") from error

    # Verdicts.

    def flag(self, image_id: int, marked: bool | None) -> FlagChange:
        """Write the curator's verdict for one image at once and remember it for undo."""
        previous = set_verdicts(self.catalog, [image_id], marked, curator=self.curator)
        change = FlagChange(image_id=image_id, previous=previous[image_id], marked=marked)
        self.flag_history.append(change)
        self.touched.append(image_id)
        return change

    def undo(self) -> FlagChange | None:
        """Restore the verdict replaced by this session's newest flag; None when there is nothing to undo.

        The restore is itself recorded as a verdict, so the history in the catalog stays complete.
        """
        if not self.flag_history:
            return None
        change = self.flag_history.pop()
        set_verdicts(self.catalog, [change.image_id], change.previous, curator=self.curator, note="undo")
        self.touched.append(change.image_id)
        return change

    def review_queue(self, kind: str, query: Query | None = None, limit: int = REVIEW_LIMIT) -> list[int]:
        """Return the ids to review, most useful first, within an optional query.

        ``uncertain``: unreviewed images with a detector score, nearest the threshold first.
        ``disputed``: images where the curator's verdict and the detector disagree, by id.
        """
        condition = (query or Query()).where()
        if kind == "uncertain":
            statement = (
                select(Image.id)
                .where(condition, Image.marking_verdict.is_(None), Image.marking_score.is_not(None))
                .order_by(func.abs(Image.marking_score - DETECTOR_THRESHOLD), Image.id)
            )
        elif kind == "disputed":
            statement = select(Image.id).where(condition, parse("disputed").where()).order_by(Image.id)
        else:
            raise ValueError(f"unknown review kind {kind!r}; expected 'uncertain' or 'disputed'")
        with self.catalog.session() as session:
            return list(session.scalars(statement.limit(limit)))

    # Splits.

    def preview_split(self, spec: SplitSpec) -> SplitPlan:
        """Work out a split with ``curator.splits`` and return its plan; nothing is written."""
        from curator.splits import preview_split

        return preview_split(self.catalog, spec)

    def create_split(self, spec: SplitSpec) -> dict[str, Any]:
        """Create a split with ``curator.splits`` and return its summary (counts per side, exclusions)."""
        from curator.splits import create_split, split_summary

        split = create_split(self.catalog, spec)
        return split_summary(self.catalog, split.name)

    def list_splits(self) -> list[dict[str, Any]]:
        """Return every split with its query, seed, lock state and images per side."""
        from curator.splits import list_splits

        return list_splits(self.catalog)


def _shrink(pixels: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    height, width = pixels.shape
    factor = max_side / max(height, width)
    if factor >= 1.0:
        return pixels
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def _scale_box(box: list[float], scale_x: float, scale_y: float) -> list[float]:
    x, y, w, h = (float(value) for value in box[:4])
    return [x * scale_x, y * scale_y, w * scale_x, h * scale_y]
