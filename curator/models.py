"""The catalog schema: SQLAlchemy 2.0 typed models for images, lineage, detections, verdicts,
generators, jobs, splits and evaluations.

Every image, original or synthetic, is one ``Image`` row keyed by the SHA-256 of its file. The
curator's marking verdict lives in ``MarkingVerdict`` (history) and in ``Image.marking_verdict``
(the current value); detector output lives in ``Detection`` rows and is mirrored into
``Image.marking_detected`` / ``Image.marking_score`` for fast queries, so neither overwrites the
other.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

LABELS = ("normal", "benign", "cancer")
VIEWS = ("CC", "MLO")
SIDES = ("LEFT", "RIGHT")
ORIGINS = ("original", "synthetic", "derived")
METHODS = ("sample", "interpolation", "ball", "manipulation", "cleaned", "canonical")
SPLIT_SIDES = ("train", "val", "test")
JOB_STATUSES = ("pending", "running", "done", "failed", "cancelled")


def utcnow() -> dt.datetime:
    """Return the current time in UTC, timezone-aware."""
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    """Declarative base with JSON columns for ``dict`` and ``list`` annotations."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Image(Base):
    """One mammogram file, original, derived or synthetic, with its provenance."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # Originals stay where they were imported from; derived and synthetic files live in the store.
    file_path: Mapped[str] = mapped_column(Text)
    work_path: Mapped[str | None] = mapped_column(Text)
    file_size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bit_depth: Mapped[int] = mapped_column(Integer, default=8)
    file_format: Mapped[str] = mapped_column(String(16))
    dataset: Mapped[str] = mapped_column(String(32))
    patient_key: Mapped[str | None] = mapped_column(String(128))
    case_id: Mapped[str | None] = mapped_column(String(64))

    label: Mapped[str | None] = mapped_column(String(16))
    label_source: Mapped[str | None] = mapped_column(String(64))
    view: Mapped[str | None] = mapped_column(String(8))
    view_source: Mapped[str | None] = mapped_column(String(64))
    side: Mapped[str | None] = mapped_column(String(8))
    side_source: Mapped[str | None] = mapped_column(String(64))

    origin: Mapped[str] = mapped_column(String(16), default="original")
    method: Mapped[str | None] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    generator_id: Mapped[int | None] = mapped_column(ForeignKey("generators.id", ondelete="SET NULL"))
    latent_path: Mapped[str | None] = mapped_column(Text)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)

    # Current curator verdict (None: not reviewed). History is in MarkingVerdict.
    marking_verdict: Mapped[bool | None] = mapped_column(Boolean)
    # Mirror of the newest marking detection, for queries; the Detection rows are the record.
    marking_detected: Mapped[bool | None] = mapped_column(Boolean)
    marking_score: Mapped[float | None] = mapped_column(Float)
    # "marked", "unmarked" or None (unchecked): the verdict if any, else the detector. Kept in
    # step by the ORM events below so that `marked` queries use one indexed column.
    marking: Mapped[str | None] = mapped_column(String(12))

    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    generator: Mapped[Generator | None] = relationship(foreign_keys=[generator_id])

    __table_args__ = (
        Index("ix_images_facets", "label", "view", "side", "origin", "method"),
        Index("ix_images_origin_method", "origin", "method"),
        Index("ix_images_patient", "patient_key"),
        Index("ix_images_dataset", "dataset"),
        Index("ix_images_generator", "generator_id"),
        Index("ix_images_marking", "marking", "label", "view", "side"),
        Index("ix_images_label_side", "label", "side", "origin"),
    )


def effective_marking(verdict: bool | None, detected: bool | None) -> str | None:
    """Return the marking state: the curator's verdict when there is one, else the detector's."""
    decided = verdict if verdict is not None else detected
    if decided is None:
        return None
    return "marked" if decided else "unmarked"


@event.listens_for(Image, "before_insert")
@event.listens_for(Image, "before_update")
def _keep_marking_in_step(_mapper, _connection, image: Image) -> None:
    image.marking = effective_marking(image.marking_verdict, image.marking_detected)


class Lineage(Base):
    """A parent-child edge: which images a derived or synthetic image was made from, and how."""

    __tablename__ = "lineage"

    child_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    # "parent" for an encoded or edited image; "direction_from"/"direction_to" for the two groups
    # whose mean latents defined a manipulation direction.
    role: Mapped[str] = mapped_column(String(32), primary_key=True, default="parent")

    __table_args__ = (Index("ix_lineage_parent", "parent_id"),)


class DetectionRun(Base):
    """One run of one detector version with fixed parameters."""

    __tablename__ = "detection_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    detector: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    params_hash: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("detector", "version", "params_hash", name="uq_detection_runs_key"),)


class Detection(Base):
    """A detector's result for one image: score, yes/no and the boxes it found."""

    __tablename__ = "detections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("detection_runs.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(Float)
    flagged: Mapped[bool] = mapped_column(Boolean)
    boxes: Mapped[list[Any]] = mapped_column(default=list)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    run: Mapped[DetectionRun] = relationship()

    __table_args__ = (
        UniqueConstraint("run_id", "image_id", name="uq_detections_run_image"),
        Index("ix_detections_image", "image_id"),
    )


class MarkingVerdict(Base):
    """A curator's decision on whether an image carries painted marking; the newest one counts."""

    __tablename__ = "marking_verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    # None records that the curator cleared an earlier verdict.
    marked: Mapped[bool | None] = mapped_column(Boolean)
    boxes: Mapped[list[Any]] = mapped_column(default=list)
    curator: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_marking_verdicts_image", "image_id"),)


class Generator(Base):
    """A trained (or training) generative model with its config and checkpoints."""

    __tablename__ = "generators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    preset: Mapped[str | None] = mapped_column(String(32))
    query: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="training")
    label: Mapped[str | None] = mapped_column(String(16))
    view: Mapped[str | None] = mapped_column(String(8))
    side: Mapped[str | None] = mapped_column(String(8))
    output_dir: Mapped[str] = mapped_column(Text)
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    initial_bits_per_dim: Mapped[float | None] = mapped_column(Float)
    # Held-out bits per dimension of the checkpoint used for generation (the best one seen).
    bits_per_dim: Mapped[float | None] = mapped_column(Float)
    best_step: Mapped[int | None] = mapped_column(Integer)
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class GeneratorImage(Base):
    """An image a generator was trained on ("train") or measured on ("heldout")."""

    __tablename__ = "generator_images"

    generator_id: Mapped[int] = mapped_column(ForeignKey("generators.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="train")

    __table_args__ = (Index("ix_generator_images_image", "image_id"),)


class GeneratorMetric(Base):
    """Loss and bits per dimension of a generator at one training step."""

    __tablename__ = "generator_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generator_id: Mapped[int] = mapped_column(ForeignKey("generators.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    train_bits_per_dim: Mapped[float | None] = mapped_column(Float)
    heldout_bits_per_dim: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("generator_id", "step", name="uq_generator_metrics_step"),)


class Checkpoint(Base):
    """A checkpoint file written during a generator's training."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generator_id: Mapped[int] = mapped_column(ForeignKey("generators.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    sample_grid_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("generator_id", "step", name="uq_checkpoints_step"),)


class Job(Base):
    """A long-running piece of work (import, detection, training, ...) with its progress and log."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    # Optional idempotency key: a stage of `curator study` that finished is skipped on re-run.
    key: Mapped[str | None] = mapped_column(String(255))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    total: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(Text)
    log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pid: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_jobs_key", "key"), Index("ix_jobs_status", "status"))


class Split(Base):
    """A train/validation/test partition built from a query, with its seed and parameters."""

    __tablename__ = "splits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    query: Mapped[str] = mapped_column(Text)
    synthetic_query: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set once an evaluation has used the split; a locked split is never changed.
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SplitMember(Base):
    """An image on one side (train, val or test) of a split."""

    __tablename__ = "split_members"

    split_id: Mapped[int] = mapped_column(ForeignKey("splits.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    side: Mapped[str] = mapped_column(String(8))

    __table_args__ = (Index("ix_split_members_side", "split_id", "side"), Index("ix_split_members_image", "image_id"))


class SplitExclusion(Base):
    """A synthetic or derived candidate kept out of a split, and why."""

    __tablename__ = "split_exclusions"

    split_id: Mapped[int] = mapped_column(ForeignKey("splits.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)


class Evaluation(Base):
    """A classifier evaluation (or realism / memorisation check) and its metrics."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="classifier")
    split_id: Mapped[int | None] = mapped_column(ForeignKey("splits.id", ondelete="RESTRICT"))
    generator_id: Mapped[int | None] = mapped_column(ForeignKey("generators.id", ondelete="SET NULL"))
    experiment: Mapped[str | None] = mapped_column(String(128))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seeds: Mapped[list[Any]] = mapped_column(default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")
    seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_evaluations_split", "split_id"),)
