"""`curator study`: the whole augmentation study on a dataset folder, resumable, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curator.cli.common import UserError, console, handle_errors, progress_bar, state_of


def study_command(
    context: typer.Context,
    data_dir: Annotated[Path, typer.Argument(help="The dataset folder (mini-DDSM, MIAS, a labelled folder or DICOM).")],
    preset: Annotated[str, typer.Option("--preset", help="small (two CPU cores, about half an hour on 100 films) or study (the reference study's settings, for a GPU).")] = "small",
    out: Annotated[Path | None, typer.Option("--out", help="Folder of report.md and its pictures (default: reports/study-TAG in the data home).")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="mini-ddsm, mias, folder or dicom (default: detected from the folder).")] = None,
    labels: Annotated[str, typer.Option("--labels", help="Comma-separated labels to classify; the first is negative, cancer positive.")] = "normal,cancer",
    clean: Annotated[bool, typer.Option("--clean", help="Also paint out the detected marking and evaluate a training set with the cleaned films.")] = False,
    weights: Annotated[str, typer.Option("--weights", help="Classifier start: imagenet, none or a local .h5 file (imagenet falls back to none, with a caveat, when offline).")] = "imagenet",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, the flows and the first classifier run.")] = 0,
    seeds: Annotated[int | None, typer.Option("--seeds", help="Classifier runs per training set (default: the preset's).", min=1)] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Classifier epochs at most (default: the preset's).", min=1)] = None,
    glow_steps: Annotated[int | None, typer.Option("--glow-steps", help="Flow training steps per generator (default: the preset's).", min=1)] = None,
    device: Annotated[str | None, typer.Option("--device", help="torch device for the flows (default: CUDA when present).")] = None,
) -> None:
    """Run the augmentation study on a dataset folder and write report.md; re-running skips finished stages."""
    from curator.study import STUDY_PRESETS, Study, StudyOptions

    if preset not in STUDY_PRESETS:
        raise UserError(f"unknown --preset {preset!r}; choose one of {', '.join(STUDY_PRESETS)}")
    if not data_dir.is_dir():
        raise UserError(f"dataset folder not found: {data_dir}")
    label_list = tuple(word.strip().lower() for word in labels.split(",") if word.strip())
    if len(label_list) < 2:
        raise UserError(f"--labels needs at least two labels, got {labels!r}")
    chosen = STUDY_PRESETS[preset]
    changes = {}
    if seeds is not None:
        changes["seeds"] = seeds
    if epochs is not None:
        changes["epochs"] = epochs
    if glow_steps is not None:
        overrides = dict(chosen.glow_overrides)
        overrides["steps"] = glow_steps
        overrides["eval_every"] = max(1, min(overrides.get("eval_every", glow_steps), glow_steps))
        overrides["checkpoint_every"] = max(1, min(overrides.get("checkpoint_every", glow_steps), glow_steps))
        changes["glow_overrides"] = overrides
    if changes:
        chosen = chosen.with_changes(**changes)
    state = state_of(context)
    options = StudyOptions(data_dir=data_dir, preset=chosen, kind=kind, labels=label_list, clean=clean, weights=weights, seed=seed, out_dir=out, device=device)

    from curator.jobs import JobRecorder

    with progress_bar() as bar:
        task = bar.add_task("study", total=None, status="")

        def on_stage(stage: str, status: str) -> None:
            if status == "running":
                bar.update(task, description=stage, completed=0, total=None, status="")
            elif status == "skipped":
                console.print(f"  {stage}: already done, skipped", highlight=False)
            else:
                console.print(f"  {stage}: done", highlight=False)

        def on_progress(stage: str, done: float, total: float | None) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        study = Study(state.catalog, state.settings, options, on_stage=on_stage, on_progress=on_progress)
        with JobRecorder(state.catalog, "study", {"data": str(study.data_dir), "preset": preset, "tag": study.tag}):
            result = study.run()
    console.print(f"ran {len(result.ran)} stages, skipped {len(result.skipped)} already done")
    for caveat in result.caveats:
        console.print(f"caveat: {caveat}", highlight=False)
    console.print(f"report: {result.report}")


def register(app: typer.Typer) -> None:
    """Add the study command."""
    app.command("study")(handle_errors(study_command))
