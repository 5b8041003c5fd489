"""The catalog side of the flows: training generators on query results and recording every
image they make with its method, parameters, parents, generator and latent file.

``glow`` does not import the catalog. This module turns catalog rows into the uint8 arrays
``glow`` trains on, records the generator with the exact images it saw, and stores each output
as a synthetic image whose label, view and side come from the generator's training set or from
the target group of a manipulation, with the source of each value written beside it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import delete, select

from curator.catalog import NewImage, store_new_image, work_pixels
from curator.db import Catalog, CatalogError
from curator.models import Checkpoint, Generator, GeneratorImage, GeneratorMetric, Image
from curator.query import Query
from curator.settings import Settings

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str) -> str:
    """Reject generator names that cannot be folder names."""
    if not NAME_PATTERN.match(name):
        raise CatalogError(f"invalid generator name {name!r}: use letters, digits, '.', '_' and '-' (at most 128)")
    return name


def model_input(settings: Settings, images: list[Image], image_size: int) -> np.ndarray:
    """Return the working derivatives of images as a uint8 array (N, 1, size, size)."""
    arrays = []
    for image in images:
        pixels = work_pixels(settings, image)
        if pixels.shape != (image_size, image_size):
            pixels = cv2.resize(pixels, (image_size, image_size), interpolation=cv2.INTER_AREA)
        arrays.append(pixels)
    if not arrays:
        return np.zeros((0, 1, image_size, image_size), dtype=np.uint8)
    return np.stack(arrays)[:, None]


def heldout_split(images: list[Image], fraction: float, seed: int) -> tuple[list[Image], list[Image]]:
    """Split images into training and held-out sets by patient, so no woman is on both sides."""
    if fraction <= 0 or len(images) < 2:
        return list(images), []
    groups: dict[str, list[Image]] = {}
    for image in images:
        groups.setdefault(image.patient_key or f"image:{image.id}", []).append(image)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    target = max(1, round(fraction * len(images)))
    heldout: list[Image] = []
    for index in order:
        if len(heldout) >= target or len(heldout) + len(groups[keys[index]]) > len(images) - 1:
            continue
        heldout.extend(groups[keys[index]])
    held_ids = {image.id for image in heldout}
    return [image for image in images if image.id not in held_ids], heldout


def _common(values: list[str | None]) -> str | None:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


@dataclass
class TrainOutcome:
    """Result of a training command: counts, bits per dimension and the output folder."""

    generator_id: int
    name: str
    train_count: int
    heldout_count: int
    initial_bits_per_dim: float | None
    final_bits_per_dim: float | None
    best_bits_per_dim: float | None
    best_step: int | None
    steps_done: int
    interrupted: bool
    output_dir: Path
    sample_grids: list[Path] = field(default_factory=list)


def train_generator(
    catalog: Catalog,
    settings: Settings,
    query: Query,
    name: str,
    preset: str = "small",
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    device: str | None = None,
    on_progress: Callable[[Any], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> TrainOutcome:
    """Train (or resume) a named generator on the images a query selects."""
    from glow.config import PRESETS, FlowConfig
    from glow.train import NonFiniteError, train

    check_name(name)
    if preset not in PRESETS:
        raise CatalogError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")

    with catalog.session() as session:
        generator = session.scalars(select(Generator).where(Generator.name == name)).first()
        if generator is not None and not resume:
            raise CatalogError(f"generator {name!r} already exists; pass --resume to continue it or choose another --name")
        if generator is not None:
            config = FlowConfig.from_dict(generator.config)
            if overrides and "steps" in overrides:
                config = config.replace(steps=int(overrides["steps"]))
            roles = dict(session.execute(select(GeneratorImage.image_id, GeneratorImage.role).where(GeneratorImage.generator_id == generator.id)).all())
            rows = {image.id: image for image in session.scalars(select(Image).where(Image.id.in_(list(roles))))}
            train_images = [rows[image_id] for image_id in sorted(roles) if roles[image_id] == "train"]
            heldout_images = [rows[image_id] for image_id in sorted(roles) if roles[image_id] == "heldout"]
        else:
            config = PRESETS[preset].replace(**(overrides or {}))
            selected = list(session.scalars(select(Image).where(query.where()).order_by(Image.id)))
            if len(selected) < 2:
                raise CatalogError(f"query '{query}' selects {len(selected)} images; a generator needs at least 2")
            train_images, heldout_images = heldout_split(selected, config.heldout_fraction, config.seed)

    output_dir = settings.generators_dir / name
    if generator is None:
        with catalog.transaction() as session:
            generator = Generator(
                name=name, kind=config.model, preset=preset, query=str(query), config=config.to_dict(), status="training",
                label=_common([image.label for image in train_images]), view=_common([image.view for image in train_images]),
                side=_common([image.side for image in train_images]), output_dir=str(output_dir),
            )
            session.add(generator)
            session.flush()
            session.add_all(GeneratorImage(generator_id=generator.id, image_id=image.id, role="train") for image in train_images)
            session.add_all(GeneratorImage(generator_id=generator.id, image_id=image.id, role="heldout") for image in heldout_images)
    else:
        with catalog.transaction() as session:
            session.get(Generator, generator.id).status = "training"
    generator_id = generator.id

    train_array = model_input(settings, train_images, config.image_size)
    heldout_array = model_input(settings, heldout_images, config.image_size)

    def progress(event) -> None:
        if event.heldout_bpd is not None:
            _record_metric(catalog, generator_id, event.step, event.loss, event.train_bpd, event.heldout_bpd)
        if on_progress:
            on_progress(event)

    try:
        result = train(config, train_array, heldout_array, output_dir, resume=resume, device=device, on_progress=progress, stop_requested=stop_requested)
    except NonFiniteError:
        _finish(catalog, generator_id, output_dir, status="failed")
        raise
    except KeyboardInterrupt:
        _finish(catalog, generator_id, output_dir, status="interrupted")
        raise
    except Exception:
        # A bad device or config must not leave the generator looking as if it were still training.
        _finish(catalog, generator_id, output_dir, status="failed")
        raise
    for metric in result.metrics:
        if metric.get("heldout_bpd") is not None:
            _record_metric(catalog, generator_id, metric["step"], metric.get("loss"), metric.get("train_bpd"), metric["heldout_bpd"])
    status = "interrupted" if result.interrupted else "trained"
    _finish(catalog, generator_id, output_dir, status=status, result=result)
    return TrainOutcome(
        generator_id=generator_id, name=name, train_count=len(train_images), heldout_count=len(heldout_images),
        initial_bits_per_dim=result.initial_heldout_bpd, final_bits_per_dim=result.final_heldout_bpd,
        best_bits_per_dim=result.best_heldout_bpd, best_step=result.best_step, steps_done=result.steps_done,
        interrupted=result.interrupted, output_dir=output_dir, sample_grids=list(result.sample_grids),
    )


def _record_metric(catalog: Catalog, generator_id: int, step: int, loss, train_bpd, heldout_bpd) -> None:
    with catalog.transaction() as session:
        session.execute(delete(GeneratorMetric).where(GeneratorMetric.generator_id == generator_id, GeneratorMetric.step == step))
        session.add(GeneratorMetric(generator_id=generator_id, step=step, loss=loss, train_bits_per_dim=train_bpd, heldout_bits_per_dim=heldout_bpd))


def _finish(catalog: Catalog, generator_id: int, output_dir: Path, status: str, result=None) -> None:
    """Record the checkpoints on disk and the generator's state after training stopped."""
    with catalog.transaction() as session:
        generator = session.get(Generator, generator_id)
        known = set(session.scalars(select(Checkpoint.step).where(Checkpoint.generator_id == generator_id)))
        latest_step = -1
        for path in sorted(output_dir.glob("checkpoint-*.pt")):
            step = int(path.stem.split("-")[1])
            latest_step = max(latest_step, step)
            if step not in known:
                grid = output_dir / f"samples-{step}.png"
                session.add(Checkpoint(generator_id=generator_id, step=step, path=str(path), sample_grid_path=str(grid) if grid.exists() else None))
        if latest_step >= 0:
            generator.checkpoint_path = str(output_dir / f"checkpoint-{latest_step}.pt")
            generator.steps_done = latest_step
        if result is not None:
            generator.initial_bits_per_dim = result.initial_heldout_bpd
            generator.bits_per_dim = result.final_heldout_bpd
            # Small training sets overfit: held-out bits per dimension can fall, then climb far above
            # where they started. Generation uses the weights with the lowest held-out value.
            best = output_dir / "best.pt"
            if best.exists() and result.best_heldout_bpd is not None:
                generator.checkpoint_path = str(best)
                generator.bits_per_dim = result.best_heldout_bpd
                generator.best_step = result.best_step
        generator.status = status if generator.checkpoint_path or status == "failed" else "failed"
        generator.finished_at = dt.datetime.now(dt.timezone.utc)


def load_generator(catalog: Catalog, name: str, device: str | None = None):
    """Return (generator row, model, config) for a trained generator name or id."""
    from glow.train import load_checkpoint

    with catalog.session() as session:
        condition = Generator.name == name
        if name.isdigit():
            condition = condition | (Generator.id == int(name))
        generator = session.scalars(select(Generator).where(condition)).first()
    if generator is None:
        raise CatalogError(f"generator {name!r} not found; 'curator glow list' shows the trained ones")
    if not generator.checkpoint_path or not Path(generator.checkpoint_path).exists():
        raise CatalogError(f"generator {name!r} has no checkpoint on disk yet (status {generator.status})")
    model, config = load_checkpoint(generator.checkpoint_path, device=device)
    return generator, model, config


@dataclass
class GenerationOutcome:
    """Images a generation command added, and the picture of the batch."""

    created: list[int] = field(default_factory=list)
    existing: list[int] = field(default_factory=list)
    picture: Path | None = None


def _store_outputs(
    catalog: Catalog,
    settings: Settings,
    generator: Generator,
    generated,
    method: str,
    params_for: Callable[[int], dict[str, Any]],
    parents_for: Callable[[int], list[tuple[int, str]]],
    labels_for: Callable[[int], dict[str, Any]],
    work_size: int,
) -> GenerationOutcome:
    from glow.latent import save_latent

    outcome = GenerationOutcome()
    images = generated.images
    with catalog.transaction() as session:
        for index in range(len(images)):
            pixels = images[index, 0] if images.ndim == 4 else images[index]
            decided = labels_for(index)
            new = NewImage(
                pixels=np.ascontiguousarray(pixels.astype(np.uint8)), origin="synthetic", method=method, params=params_for(index),
                parents=parents_for(index), generator_id=generator.id, dataset="synthetic", **decided,
            )
            row, is_new = store_new_image(session, settings, new, work_size=work_size)
            if is_new:
                latent_path = settings.latents_dir / row.sha256[:2] / f"{row.sha256}.npz"
                save_latent(latent_path, generated.latents[index], meta={"image_id": row.id, "generator": generator.name, "method": method})
                row.latent_path = str(latent_path)
                outcome.created.append(row.id)
            else:
                outcome.existing.append(row.id)
    return outcome


def generator_labels(generator: Generator) -> dict[str, Any]:
    """Label, view and side of a generator's outputs: those its whole training set shares."""
    source = f"generator {generator.name} training set"
    return {
        "label": generator.label, "label_source": source if generator.label else None,
        "view": generator.view, "view_source": source if generator.view else None,
        "side": generator.side, "side_source": source if generator.side else None,
    }


def selected_images(catalog: Catalog, query: Query, limit: int | None = None) -> list[Image]:
    """Return the images a query selects, ordered by id."""
    with catalog.session() as session:
        statement = select(Image).where(query.where()).order_by(Image.id)
        if limit:
            statement = statement.limit(limit)
        return list(session.scalars(statement))


def _picture_path(settings: Settings, generator: Generator, method: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return settings.reports_dir / "generated" / f"{generator.name}-{method}-{stamp}.png"


def generate_samples(catalog: Catalog, settings: Settings, name: str, count: int, temperature: float, seed: int, work_size: int = 128, device: str | None = None) -> GenerationOutcome:
    """Sample ``count`` images from a generator's prior at a temperature."""
    from glow.grid import save_grid
    from glow.operations import sample

    generator, model, config = load_generator(catalog, name, device)
    generated = sample(model, count, temperature=temperature, seed=seed, n_bits=config.n_bits)
    outcome = _store_outputs(
        catalog, settings, generator, generated, "sample",
        params_for=lambda index: {"temperature": temperature, "seed": seed, "index": index},
        parents_for=lambda index: [],
        labels_for=lambda index: generator_labels(generator),
        work_size=work_size,
    )
    outcome.picture = save_grid(generated.images, _picture_path(settings, generator, "sample"), columns=min(8, count))
    return outcome


def generate_interpolations(
    catalog: Catalog, settings: Settings, name: str, pairs: list[tuple[Image, Image]], steps: int, spherical: bool, work_size: int = 128, device: str | None = None
) -> GenerationOutcome:
    """Decode ``steps`` latents between each pair of images (the end points are not stored again)."""
    from glow.grid import save_grid
    from glow.operations import interpolate

    generator, model, config = load_generator(catalog, name, device)
    weights = [float(weight) for weight in np.linspace(0.0, 1.0, steps + 2)[1:-1]]
    outcome = GenerationOutcome()
    strips = []
    for image_a, image_b in pairs:
        arrays = model_input(settings, [image_a, image_b], config.image_size)
        generated = interpolate(model, arrays[0], arrays[1], weights, spherical=spherical, n_bits=config.n_bits)
        same_label = image_a.label if image_a.label == image_b.label else None
        labels = generator_labels(generator)
        if same_label:
            labels.update(label=same_label, label_source="both interpolated images")
        part = _store_outputs(
            catalog, settings, generator, generated, "interpolation",
            params_for=lambda index: {"weight": weights[index], "spherical": spherical, "between": [image_a.id, image_b.id]},
            parents_for=lambda index: [(image_a.id, "parent"), (image_b.id, "parent")],
            labels_for=lambda index: labels,
            work_size=work_size,
        )
        outcome.created += part.created
        outcome.existing += part.existing
        strips.append(np.concatenate([arrays[:1], generated.images, arrays[1:]]))
    if strips:
        outcome.picture = save_grid(np.concatenate(strips), _picture_path(settings, generator, "interpolation"), columns=steps + 2)
    return outcome


def generate_ball(
    catalog: Catalog, settings: Settings, name: str, centres: list[Image], radius: float, count: int, seed: int, work_size: int = 128, device: str | None = None
) -> GenerationOutcome:
    """Decode ``count`` latents around the given images (spread over them in turn)."""
    from glow.grid import save_grid
    from glow.operations import ball

    generator, model, config = load_generator(catalog, name, device)
    if not centres:
        raise CatalogError("no images to sample around")
    per_centre = [count // len(centres) + (1 if index < count % len(centres) else 0) for index in range(len(centres))]
    outcome = GenerationOutcome()
    rows = []
    for index, (centre, how_many) in enumerate(zip(centres, per_centre)):
        if how_many == 0:
            continue
        array = model_input(settings, [centre], config.image_size)
        generated = ball(model, array[0], radius=radius, count=how_many, seed=seed + index, n_bits=config.n_bits)
        labels = generator_labels(generator)
        labels.update(
            label=centre.label or labels["label"], label_source="ball centre image" if centre.label else labels["label_source"],
            view=centre.view or labels["view"], view_source="ball centre image" if centre.view else labels["view_source"],
            side=centre.side or labels["side"], side_source="ball centre image" if centre.side else labels["side_source"],
        )
        part = _store_outputs(
            catalog, settings, generator, generated, "ball",
            params_for=lambda position, centre=centre, index=index: {"radius": radius, "seed": seed + index, "index": position, "around": centre.id},
            parents_for=lambda position, centre=centre: [(centre.id, "parent")],
            labels_for=lambda position, labels=labels: labels,
            work_size=work_size,
        )
        outcome.created += part.created
        outcome.existing += part.existing
        rows.append(np.concatenate([array, generated.images]))
    width = max(len(row) for row in rows)
    padded = [np.concatenate([row, np.zeros((width - len(row),) + row.shape[1:], dtype=row.dtype)]) for row in rows]
    outcome.picture = save_grid(np.concatenate(padded), _picture_path(settings, generator, "ball"), columns=width)
    return outcome


def generate_manipulations(
    catalog: Catalog, settings: Settings, name: str, images: list[Image], group_from: list[Image], group_to: list[Image],
    strength: float, from_query: Query, to_query: Query, work_size: int = 128, device: str | None = None,
) -> GenerationOutcome:
    """Move images along the direction from the mean latent of one group to the other's."""
    from glow.grid import save_grid
    from glow.operations import direction, manipulate

    generator, model, config = load_generator(catalog, name, device)
    if not images or not group_from or not group_to:
        raise CatalogError(f"manipulation needs images ({len(images)}), a --from group ({len(group_from)}) and a --to group ({len(group_to)})")
    offset = direction(model, model_input(settings, group_from, config.image_size), model_input(settings, group_to, config.image_size), n_bits=config.n_bits)
    arrays = model_input(settings, images, config.image_size)
    generated = manipulate(model, arrays, offset, strength, n_bits=config.n_bits)
    target_label = _common([image.label for image in group_to])
    source_label = _common([image.label for image in group_from])
    direction_parents = [(image.id, "direction_from") for image in group_from] + [(image.id, "direction_to") for image in group_to]

    def labels_for(index: int) -> dict[str, Any]:
        image = images[index]
        values = {"view": image.view, "view_source": "manipulated image", "side": image.side, "side_source": "manipulated image"}
        # The label moves only when the image belongs to the class the direction starts from.
        if target_label and strength > 0 and source_label and image.label == source_label:
            values.update(label=target_label, label_source="direction target group")
        else:
            values.update(label=image.label, label_source="manipulated image")
        return values

    outcome = _store_outputs(
        catalog, settings, generator, generated, "manipulation",
        params_for=lambda index: {
            "strength": strength, "from": str(from_query), "to": str(to_query),
            "from_count": len(group_from), "to_count": len(group_to), "image": images[index].id,
        },
        parents_for=lambda index: [(images[index].id, "parent")] + direction_parents,
        labels_for=labels_for,
        work_size=work_size,
    )
    # Originals on the top row, their manipulated versions below, for the first dozen images.
    shown = min(len(images), 12)
    pairs = np.concatenate([arrays[:shown], generated.images[:shown]])
    outcome.picture = save_grid(pairs, _picture_path(settings, generator, "manipulation"), columns=shown)
    return outcome
