"""Generator training and the four generation methods, as recorded in the catalog."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from curator.db import CatalogError
from curator.generation import (
    generate_ball,
    generate_interpolations,
    generate_manipulations,
    generate_samples,
    selected_images,
    train_generator,
)
from curator.importing import run_import
from curator.models import Checkpoint, Generator, GeneratorImage, GeneratorMetric, Image, Lineage
from curator.query import parse
from curator.sources import discover_folder

TINY = {"image_size": 16, "levels": 2, "steps_per_level": 2, "hidden_channels": 8, "batch_size": 4, "steps": 4,
        "eval_every": 2, "checkpoint_every": 2, "warmup_steps": 1, "heldout_fraction": 0.25}


def _film(seed: int, bright: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    film = np.zeros((64, 40), dtype=np.uint8)
    cv2.ellipse(film, (0, 32), (28, 24), 0, -90, 90, bright, -1)
    return cv2.add(film, rng.integers(0, 20, film.shape, dtype=np.uint8))


@pytest.fixture
def trained(tmp_path, sqlite_catalog, sqlite_settings):
    root = tmp_path / "films"
    for label, bright in (("normal", 140), ("cancer", 200)):
        (root / label).mkdir(parents=True)
        for index in range(6):
            cv2.imwrite(str(root / label / f"{label}-{index}.png"), _film(index + bright, bright))
    run_import(sqlite_catalog, sqlite_settings, discover_folder(root), work_size=32, workers=1)
    outcome = train_generator(sqlite_catalog, sqlite_settings, parse("normal"), "tiny", overrides=TINY, device="cpu")
    return sqlite_catalog, sqlite_settings, outcome


def test_training_records_generator_images_metrics_checkpoints(trained):
    catalog, _, outcome = trained
    assert outcome.train_count + outcome.heldout_count == 6
    assert outcome.heldout_count >= 1
    with catalog.session() as session:
        generator = session.scalars(select(Generator).where(Generator.name == "tiny")).one()
        roles = session.execute(select(GeneratorImage.role, func.count()).where(GeneratorImage.generator_id == generator.id).group_by(GeneratorImage.role)).all()
        metric_steps = list(session.scalars(select(GeneratorMetric.step).where(GeneratorMetric.generator_id == generator.id).order_by(GeneratorMetric.step)))
        checkpoint_steps = list(session.scalars(select(Checkpoint.step).where(Checkpoint.generator_id == generator.id).order_by(Checkpoint.step)))
        trained_labels = set(session.scalars(select(Image.label).join(GeneratorImage, GeneratorImage.image_id == Image.id).where(GeneratorImage.generator_id == generator.id)))
    assert dict(roles) == {"train": outcome.train_count, "heldout": outcome.heldout_count}
    assert trained_labels == {"normal"}
    assert generator.label == "normal"
    assert generator.status == "trained"
    assert metric_steps[0] == 0
    assert metric_steps[-1] == 4
    assert checkpoint_steps == [2, 4]
    # Generation uses the checkpoint with the lowest held-out bits per dimension.
    assert generator.checkpoint_path.endswith("best.pt")
    with catalog.session() as session:
        curve = dict(session.execute(select(GeneratorMetric.step, GeneratorMetric.heldout_bits_per_dim).where(GeneratorMetric.generator_id == generator.id)).all())
    assert generator.best_step in curve
    assert generator.bits_per_dim == pytest.approx(min(curve.values()))
    assert generator.config["image_size"] == 16


def test_training_twice_with_same_name_is_rejected(trained):
    catalog, settings, _ = trained
    with pytest.raises(CatalogError, match="already exists"):
        train_generator(catalog, settings, parse("normal"), "tiny", overrides=TINY, device="cpu")


def test_resume_continues_to_more_steps(trained):
    catalog, settings, _ = trained
    outcome = train_generator(catalog, settings, parse("normal"), "tiny", overrides={"steps": 6}, resume=True, device="cpu")
    assert outcome.steps_done == 6
    with catalog.session() as session:
        generator = session.scalars(select(Generator).where(Generator.name == "tiny")).one()
    assert generator.steps_done == 6


def _rows(catalog, ids):
    with catalog.session() as session:
        images = {image.id: image for image in session.scalars(select(Image).where(Image.id.in_(ids)))}
        lineage = session.execute(select(Lineage.child_id, Lineage.parent_id, Lineage.role).where(Lineage.child_id.in_(ids))).all()
    return images, lineage


def test_sample_records_method_generator_latent(trained):
    catalog, settings, _ = trained
    outcome = generate_samples(catalog, settings, "tiny", count=3, temperature=0.5, seed=1, work_size=32)
    images, lineage = _rows(catalog, outcome.created)
    assert len(images) == 3
    for image in images.values():
        assert (image.origin, image.method, image.label) == ("synthetic", "sample", "normal")
        assert image.label_source == "generator tiny training set"
        assert image.params["temperature"] == 0.5
        assert image.latent_path and image.latent_path.endswith(".npz")
    assert lineage == []
    assert outcome.picture.exists()
    assert [i.id for i in selected_images(catalog, parse("synthetic sampled model:tiny"))] == sorted(outcome.created)


def test_interpolation_lineage_and_decoded_latent(trained):
    from glow.latent import load_latent
    from glow.operations import decode_latents
    from glow.train import load_checkpoint

    catalog, settings, _ = trained
    a, b = selected_images(catalog, parse("cancer"))[:2]
    outcome = generate_interpolations(catalog, settings, "tiny", [(a, b)], steps=3, spherical=False, work_size=32)
    images, lineage = _rows(catalog, outcome.created)
    assert len(images) == 3
    assert {(parent, role) for _, parent, role in lineage} == {(a.id, "parent"), (b.id, "parent")}
    weights = sorted(image.params["weight"] for image in images.values())
    assert weights == pytest.approx([0.25, 0.5, 0.75])
    assert all(image.label == "cancer" for image in images.values())

    # The stored latent decodes back to the stored pixels.
    with catalog.session() as session:
        generator = session.scalars(select(Generator).where(Generator.name == "tiny")).one()
    model, config = load_checkpoint(generator.checkpoint_path, device="cpu")
    image = images[outcome.created[0]]
    latents, meta = load_latent(image.latent_path)
    decoded = decode_latents(model, [latent[None] for latent in latents], n_bits=config.n_bits)
    stored = cv2.imread(image.file_path, cv2.IMREAD_GRAYSCALE)
    assert meta["image_id"] == image.id
    assert np.array_equal(decoded[0, 0], stored)


def test_ball_radius_zero_gives_centre_back(trained):
    catalog, settings, _ = trained
    centre = selected_images(catalog, parse("normal"))[0]
    outcome = generate_ball(catalog, settings, "tiny", [centre], radius=0.0, count=2, seed=0, work_size=32)
    images, lineage = _rows(catalog, outcome.created + outcome.existing)
    assert {(parent, role) for _, parent, role in lineage} == {(centre.id, "parent")}
    pixels = cv2.imread(next(iter(images.values())).file_path, cv2.IMREAD_GRAYSCALE)
    work = cv2.imread(str(settings.home / centre.work_path), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(pixels, cv2.resize(work, (16, 16), interpolation=cv2.INTER_AREA))


def test_manipulation_records_direction_groups_and_target_label(trained):
    catalog, settings, _ = trained
    normals = selected_images(catalog, parse("normal"))
    cancers = selected_images(catalog, parse("cancer"))
    outcome = generate_manipulations(catalog, settings, "tiny", normals[:2], normals, cancers, 1.0, parse("normal"), parse("cancer"), work_size=32)
    images, lineage = _rows(catalog, outcome.created)
    assert len(images) == 2
    for image in images.values():
        assert image.method == "manipulation"
        assert image.label == "cancer"
        assert image.label_source == "direction target group"
        assert image.params["strength"] == 1.0
    roles = {}
    for child, parent, role in lineage:
        roles.setdefault(child, {}).setdefault(role, set()).add(parent)
    for child, by_role in roles.items():
        assert by_role["direction_from"] == {image.id for image in normals}
        assert by_role["direction_to"] == {image.id for image in cancers}
        assert by_role["parent"] == {images[child].params["image"]}
    assert len(selected_images(catalog, parse("cancer synthetic manipulated"))) == 2


def test_manipulation_strength_zero_returns_originals(trained):
    catalog, settings, _ = trained
    normals = selected_images(catalog, parse("normal"))
    cancers = selected_images(catalog, parse("cancer"))
    outcome = generate_manipulations(catalog, settings, "tiny", normals[:1], normals, cancers, 0.0, parse("normal"), parse("cancer"), work_size=32)
    images, _ = _rows(catalog, outcome.created + outcome.existing)
    image = next(iter(images.values()))
    assert image.label == "normal"
    pixels = cv2.imread(image.file_path, cv2.IMREAD_GRAYSCALE)
    work = cv2.imread(str(settings.home / normals[0].work_path), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(pixels, cv2.resize(work, (16, 16), interpolation=cv2.INTER_AREA))
