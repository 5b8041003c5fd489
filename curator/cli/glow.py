"""Generator commands: train Glow or RealNVP flows on a query, list them, and generate images."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curator.cli.common import UserError, console, handle_errors, print_json, progress_bar, state_of

glow_app = typer.Typer(help="Train and inspect normalizing-flow generators.", no_args_is_help=True)
generate_app = typer.Typer(help="Make new images with a trained generator; every output is catalogued.", no_args_is_help=True)

ModelName = Annotated[str, typer.Option("--model", help="Generator name (or id).")]
Device = Annotated[str | None, typer.Option("--device", help="torch device, e.g. cpu or cuda:0 (default: CUDA when present).")]
WorkSize = Annotated[int, typer.Option("--work-size", help="Side of the working derivative stored for each output.", min=16)]


def _words(values: list[str] | None) -> list[str]:
    return [word for value in values or [] for word in value.split()]


@glow_app.command("train", context_settings={"ignore_unknown_options": True})
@handle_errors
def train_command(
    context: typer.Context,
    words: Annotated[list[str] | None, typer.Argument(help="Query words selecting the training images, e.g. normal CC-left.")] = None,
    name: Annotated[str, typer.Option("--name", help="Name of the generator (a folder name).")] = "",
    preset: Annotated[str, typer.Option("--preset", help="small (64x64, minutes on a CPU) or study (128x128, L=5, K=14, for a GPU).")] = "small",
    steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps (default: the preset's).", min=0)] = None,
    model: Annotated[str | None, typer.Option("--model", help="glow or realnvp (default: the preset's).")] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", help="Training resolution (default: the preset's).", min=8)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed for batches, held-out split and samples.")] = None,
    heldout_fraction: Annotated[float | None, typer.Option("--heldout-fraction", help="Share of patients kept out for bits per dimension.", min=0.0, max=0.9)] = None,
    dequantization: Annotated[str | None, typer.Option("--dequantization", help="uniform or variational.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the named generator from its last checkpoint.")] = False,
    device: Device = None,
) -> None:
    """Train a generator on the images a query selects, recording it and its training images."""
    from curator.generation import train_generator
    from curator.jobs import JobRecorder
    from curator.query import parse
    from glow.train import NonFiniteError

    if not name:
        raise UserError("--name is required")
    overrides = {key: value for key, value in {"steps": steps, "model": model, "image_size": image_size, "seed": seed, "heldout_fraction": heldout_fraction, "dequantization": dequantization}.items() if value is not None}
    query = parse(_words(words))
    state = state_of(context)
    with JobRecorder(state.catalog, "glow-train", {"query": str(query), "name": name, "preset": preset, **overrides}) as job, progress_bar() as bar:
        task = bar.add_task(f"training {name}", total=None, status="")
        last = {"heldout": None}

        def on_progress(event) -> None:
            if event.heldout_bpd is not None:
                last["heldout"] = event.heldout_bpd
            parts = []
            if event.loss is not None:
                parts.append(f"loss {event.loss:.3f}")
            if last["heldout"] is not None:
                parts.append(f"held-out {last['heldout']:.3f} bits/dim")
            if event.images_per_second:
                parts.append(f"{event.images_per_second:.0f} img/s")
            bar.update(task, completed=event.step, total=event.total, status=", ".join(parts))
            job.progress(event.step, event.total, ", ".join(parts))

        try:
            outcome = train_generator(state.catalog, state.settings, query, name, preset=preset, overrides=overrides, resume=resume, device=device, on_progress=on_progress)
        except (ValueError, NonFiniteError) as error:
            raise UserError(str(error)) from error
        except RuntimeError as error:
            # torch reports an unknown or unavailable --device as a RuntimeError.
            if device is None:
                raise
            raise UserError(f"cannot train on --device {device}: {str(error).splitlines()[0]}") from error
        job.result = {"generator_id": outcome.generator_id, "initial_bits_per_dim": outcome.initial_bits_per_dim, "bits_per_dim": outcome.final_bits_per_dim, "steps": outcome.steps_done}
    def number(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else "n/a"

    best = f", best {number(outcome.best_bits_per_dim)} at step {outcome.best_step} (used for generation)" if outcome.best_step is not None else ""
    console.print(
        f"generator {outcome.name} (id {outcome.generator_id}): {outcome.train_count} training and {outcome.heldout_count} held-out images, "
        f"{outcome.steps_done} steps, held-out bits/dim {number(outcome.initial_bits_per_dim)} untrained -> {number(outcome.final_bits_per_dim)} at the end{best}"
        + (" (interrupted; continue with --resume)" if outcome.interrupted else "")
    )
    if outcome.sample_grids:
        console.print(f"sample grid: {outcome.sample_grids[-1]}")


@glow_app.command("list")
@handle_errors
def list_command(context: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the generators with their status and bits per dimension."""
    from sqlalchemy import func, select

    from curator.models import Generator, GeneratorImage, Image

    catalog = state_of(context).catalog
    with catalog.session() as session:
        generators = list(session.scalars(select(Generator).order_by(Generator.id)))
        counts = dict(session.execute(select(GeneratorImage.generator_id, func.count()).where(GeneratorImage.role == "train").group_by(GeneratorImage.generator_id)).all())
        outputs = dict(session.execute(select(Image.generator_id, func.count()).where(Image.generator_id.is_not(None)).group_by(Image.generator_id)).all())
    rows = [
        {"id": g.id, "name": g.name, "kind": g.kind, "preset": g.preset, "status": g.status, "query": g.query, "training_images": counts.get(g.id, 0),
         "steps": g.steps_done, "best_step": g.best_step, "initial_bits_per_dim": g.initial_bits_per_dim, "bits_per_dim": g.bits_per_dim,
         "images_made": outputs.get(g.id, 0)}
        for g in generators
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} generators")
    for column in ("id", "name", "kind", "status", "query", "train", "steps", "bits/dim", "made"):
        table.add_column(column)
    for row in rows:
        bpd = f"{row['bits_per_dim']:.3f}" if row["bits_per_dim"] is not None else "-"
        table.add_row(str(row["id"]), row["name"], row["kind"], row["status"], row["query"], str(row["training_images"]), str(row["steps"]), bpd, str(row["images_made"]))
    console.print(table)


@glow_app.command("show")
@handle_errors
def show_command(
    context: typer.Context,
    name: Annotated[str, typer.Argument(help="Generator name or id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    curve: Annotated[Path | None, typer.Option("--curve", help="Write the bits-per-dimension curve PNG here (default: next to the checkpoints).")] = None,
) -> None:
    """Show a generator's config, training set size, checkpoints and bits-per-dimension curve."""
    from sqlalchemy import func, select

    from curator.models import Checkpoint, Generator, GeneratorImage, GeneratorMetric

    catalog = state_of(context).catalog
    with catalog.session() as session:
        condition = Generator.name == name
        if name.isdigit():
            condition = condition | (Generator.id == int(name))
        generator = session.scalars(select(Generator).where(condition)).first()
        if generator is None:
            raise UserError(f"generator {name!r} not found")
        roles = dict(session.execute(select(GeneratorImage.role, func.count()).where(GeneratorImage.generator_id == generator.id).group_by(GeneratorImage.role)).all())
        metrics = list(session.scalars(select(GeneratorMetric).where(GeneratorMetric.generator_id == generator.id).order_by(GeneratorMetric.step)))
        checkpoints = list(session.scalars(select(Checkpoint).where(Checkpoint.generator_id == generator.id).order_by(Checkpoint.step)))
    picture = None
    if metrics:
        picture = _plot_curve(metrics, curve or Path(generator.output_dir) / "bits-per-dim.png", generator.name)
    details = {
        "id": generator.id, "name": generator.name, "kind": generator.kind, "preset": generator.preset, "status": generator.status,
        "query": generator.query, "label": generator.label, "view": generator.view, "side": generator.side,
        "training_images": roles.get("train", 0), "heldout_images": roles.get("heldout", 0), "config": generator.config,
        "initial_bits_per_dim": generator.initial_bits_per_dim, "bits_per_dim": generator.bits_per_dim, "best_step": generator.best_step,
        "steps": generator.steps_done,
        "checkpoint": generator.checkpoint_path,
        "curve": [{"step": m.step, "loss": m.loss, "heldout_bits_per_dim": m.heldout_bits_per_dim} for m in metrics],
        "checkpoints": [{"step": c.step, "path": c.path, "samples": c.sample_grid_path} for c in checkpoints],
        "curve_png": str(picture) if picture else None,
    }
    if as_json:
        print_json(details)
        return
    console.print(f"[bold]{generator.name}[/] (id {generator.id}) {generator.kind}, preset {generator.preset}, {generator.status}", highlight=False)
    console.print(f"  trained on '{generator.query}': {details['training_images']} images, {details['heldout_images']} held out", highlight=False)
    console.print(f"  outputs labelled: {generator.label or 'mixed'} {generator.view or ''} {generator.side or ''}", highlight=False)
    config = generator.config
    console.print(f"  config: {config.get('image_size')}x{config.get('image_size')}, L={config.get('levels')}, K={config.get('steps_per_level')}, hidden {config.get('hidden_channels')}, {config.get('coupling')} coupling, {config.get('dequantization')} dequantization, batch {config.get('batch_size')}, lr {config.get('learning_rate')}", highlight=False)
    if generator.best_step is not None:
        console.print(f"  generation uses the best checkpoint: step {generator.best_step}, held-out {generator.bits_per_dim:.3f} bits/dim ({generator.checkpoint_path})", highlight=False)
    for metric in metrics:
        console.print(f"  step {metric.step:6d}: held-out {metric.heldout_bits_per_dim:.3f} bits/dim" + (f", loss {metric.loss:.3f}" if metric.loss is not None else ""))
    for checkpoint in checkpoints:
        console.print(f"  checkpoint {checkpoint.step}: {checkpoint.path}" + (f" (samples {checkpoint.sample_grid_path})" if checkpoint.sample_grid_path else ""), highlight=False)
    if picture:
        console.print(f"  curve: {picture}", highlight=False)


def _plot_curve(metrics, path: Path, name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    steps = [metric.step for metric in metrics]
    axis.plot(steps, [metric.heldout_bits_per_dim for metric in metrics], marker="o", label="held-out")
    train_points = [(metric.step, metric.train_bits_per_dim) for metric in metrics if metric.train_bits_per_dim is not None]
    if train_points:
        axis.plot(*zip(*train_points), marker=".", label="training batch")
    axis.set_xlabel("step")
    axis.set_ylabel("bits per dimension")
    axis.set_title(f"{name}: bits per dimension")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _report(outcome, what: str) -> None:
    console.print(f"{what}: {len(outcome.created)} new images catalogued" + (f", {len(outcome.existing)} identical to images already catalogued" if outcome.existing else ""))
    if outcome.created:
        shown = ", ".join(map(str, outcome.created[:20])) + (" ..." if len(outcome.created) > 20 else "")
        console.print(f"  ids: {shown}", highlight=False)
    if outcome.picture:
        console.print(f"  picture: {outcome.picture}", highlight=False)


def _job(context, kind: str, params: dict):
    from curator.jobs import JobRecorder

    return JobRecorder(state_of(context).catalog, kind, params)


@generate_app.command("sample")
@handle_errors
def sample_command(
    context: typer.Context, model: ModelName,
    count: Annotated[int, typer.Option("--count", help="Number of images.", min=1)] = 16,
    temperature: Annotated[float, typer.Option("--temperature", help="Scale of the prior's standard deviation (0.7 is the usual compromise).", min=0.0)] = 0.7,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    work_size: WorkSize = 128, device: Device = None,
) -> None:
    """Sample new images from the generator's prior at a temperature."""
    from curator.generation import generate_samples

    state = state_of(context)
    with _job(context, "generate", {"method": "sample", "model": model, "count": count, "temperature": temperature, "seed": seed}) as job:
        outcome = generate_samples(state.catalog, state.settings, model, count, temperature, seed, work_size=work_size, device=device)
        job.result = {"created": outcome.created, "picture": str(outcome.picture)}
    _report(outcome, f"sampled {count} at temperature {temperature:g}")


@generate_app.command("interpolate")
@handle_errors
def interpolate_command(
    context: typer.Context, model: ModelName,
    between: Annotated[list[str] | None, typer.Option("--between", help="Query words; pairs are drawn from the matching images.")] = None,
    ids: Annotated[str | None, typer.Option("--ids", help="Two image ids, e.g. 12,40.")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Images between the two ends.", min=1)] = 6,
    pairs: Annotated[int, typer.Option("--pairs", help="Number of pairs drawn from --between.", min=1)] = 1,
    spherical: Annotated[bool, typer.Option("--spherical", help="Spherical instead of linear interpolation.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed for drawing pairs.")] = 0,
    work_size: WorkSize = 128, device: Device = None,
) -> None:
    """Walk between two images' latents and decode the steps in between."""
    from curator.generation import generate_interpolations, selected_images
    from curator.query import parse

    state = state_of(context)
    if ids:
        parts = [part.strip() for part in ids.split(",")]
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            raise UserError(f"invalid --ids {ids!r}; expected two image ids such as 12,40")
        found = selected_images(state.catalog, parse([f"id:{part}" for part in parts]))
        by_id = {image.id: image for image in found}
        missing = [part for part in parts if int(part) not in by_id]
        if missing:
            raise UserError(f"image not found: {', '.join(missing)}")
        chosen = [(by_id[int(parts[0])], by_id[int(parts[1])])]
    elif between:
        candidates = selected_images(state.catalog, parse(_words(between)))
        if len(candidates) < 2:
            raise UserError(f"--between selects {len(candidates)} images; at least 2 are needed")
        generator = random.Random(seed)
        chosen = [tuple(generator.sample(candidates, 2)) for _ in range(pairs)]
    else:
        raise UserError("give --between WORDS or --ids A,B")
    with _job(context, "generate", {"method": "interpolation", "model": model, "pairs": [[a.id, b.id] for a, b in chosen], "steps": steps}) as job:
        outcome = generate_interpolations(state.catalog, state.settings, model, chosen, steps, spherical, work_size=work_size, device=device)
        job.result = {"created": outcome.created, "picture": str(outcome.picture)}
    _report(outcome, f"interpolated {len(chosen)} pair(s) in {steps} steps")


@generate_app.command("ball")
@handle_errors
def ball_command(
    context: typer.Context, model: ModelName,
    around: Annotated[list[str], typer.Option("--around", help="Query words selecting the centre images.")],
    radius: Annotated[float, typer.Option("--radius", help="Euclidean radius in the full latent space.", min=0.0)] = 1.0,
    count: Annotated[int, typer.Option("--count", help="Images in total, spread over the centres in turn.", min=1)] = 8,
    limit: Annotated[int | None, typer.Option("--limit", help="Use at most this many centre images.", min=1)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    work_size: WorkSize = 128, device: Device = None,
) -> None:
    """Decode latents drawn within a radius of real images' latents."""
    from curator.generation import generate_ball, selected_images
    from curator.query import parse

    state = state_of(context)
    centres = selected_images(state.catalog, parse(_words(around)), limit=limit)
    if not centres:
        raise UserError("--around selects no images")
    with _job(context, "generate", {"method": "ball", "model": model, "radius": radius, "count": count}) as job:
        outcome = generate_ball(state.catalog, state.settings, model, centres, radius, count, seed, work_size=work_size, device=device)
        job.result = {"created": outcome.created, "picture": str(outcome.picture)}
    _report(outcome, f"{count} images within radius {radius:g} of {len(centres)} image(s)")


@generate_app.command("manipulate")
@handle_errors
def manipulate_command(
    context: typer.Context, model: ModelName,
    images: Annotated[list[str], typer.Option("--images", help="Query words selecting the images to move.")],
    from_words: Annotated[list[str], typer.Option("--from", help="Query words of the group the direction starts from, e.g. 'normal marked'.")],
    to_words: Annotated[list[str], typer.Option("--to", help="Query words of the group the direction points to, e.g. 'normal unmarked'.")],
    strength: Annotated[float, typer.Option("--strength", help="Multiple of the direction added to each latent (0 gives the image back).")] = 1.0,
    limit: Annotated[int | None, typer.Option("--limit", help="Move at most this many images.", min=1)] = None,
    work_size: WorkSize = 128, device: Device = None,
) -> None:
    """Move images along the direction between two groups' mean latents."""
    from curator.generation import generate_manipulations, selected_images
    from curator.query import parse

    state = state_of(context)
    from_query, to_query = parse(_words(from_words)), parse(_words(to_words))
    targets = selected_images(state.catalog, parse(_words(images)), limit=limit)
    group_from = selected_images(state.catalog, from_query)
    group_to = selected_images(state.catalog, to_query)
    with _job(context, "generate", {"method": "manipulation", "model": model, "from": str(from_query), "to": str(to_query), "strength": strength}) as job:
        outcome = generate_manipulations(state.catalog, state.settings, model, targets, group_from, group_to, strength, from_query, to_query, work_size=work_size, device=device)
        job.result = {"created": outcome.created, "picture": str(outcome.picture)}
    _report(outcome, f"moved {len(targets)} images from '{from_query}' ({len(group_from)}) towards '{to_query}' ({len(group_to)}) at strength {strength:g}")


def register(app: typer.Typer) -> None:
    """Add the glow and generate command groups."""
    app.add_typer(glow_app, name="glow")
    app.add_typer(generate_app, name="generate")
