"""The ``curator split`` commands (create, list, show, delete) and ``curator export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from curator.cli.common import UserError, console, error_console, handle_errors, print_json, progress_bar, state_of

split_app = typer.Typer(help="Create, list, show and delete leak-proof train/validation/test splits.", no_args_is_help=True)

Words = Annotated[list[str], typer.Option("--query", help="Query words selecting the real images, quoted as one string: --query \"normal cancer\".")]


def words_of(values: list[str] | None) -> str:
    """Join the values of a repeatable option that takes query words into one query text."""
    return " ".join(" ".join(values or []).split())


def print_plan(plan: Any) -> None:
    """Print a split plan: images and patients per side and label, exclusions and notes."""
    table = Table(title=f"split '{plan.spec.name}': {plan.query}" + (f" + {plan.synthetic_query}" if plan.synthetic_query else ""))
    labels = sorted({label for counts in plan.counts.values() for label in counts})
    table.add_column("side")
    table.add_column("patients", justify="right")
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("images", justify="right")
    for side in ("train", "val", "test"):
        counts = plan.counts.get(side, {})
        if not counts:
            continue
        table.add_row(side, str(plan.patients.get(side, 0)), *(str(counts.get(label, 0)) for label in labels), str(sum(counts.values())))
    console.print(table)
    if plan.synthetic_query is not None:
        console.print(f"synthetic: {plan.eligible_synthetic} eligible, {plan.added_synthetic} added to train, {len(plan.exclusions)} excluded")
    examples = plan.exclusion_examples()
    for reason, count in plan.exclusion_counts().items():
        shown = ", ".join(str(image_id) for image_id in examples[reason])
        more = ", ..." if count > len(examples[reason]) else ""
        console.print(f"  excluded {count}: {reason} (ids {shown}{more})", highlight=False)
    for note in plan.notes:
        error_console.print(f"note: {note}", highlight=False, soft_wrap=True)


@split_app.command("create")
@handle_errors
def create_command(
    context: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the new split (letters, digits, '.', '_', '-').")],
    query: Words,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="Share of each stratum's patients put on the test side (0 to 1).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random assignment; the same seed and catalog give the same split.")],
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of the training side's patients moved to the validation part (0 to 1).")] = 0.0,
    by_view: Annotated[bool, typer.Option("--by-view", help="Stratify by label and view, not by label alone.")] = False,
    add_synthetic: Annotated[list[str] | None, typer.Option("--add-synthetic", help="Query words selecting synthetic or derived images to add to the training side when they pass the leakage guard.")] = None,
    count: Annotated[int | None, typer.Option("--count", help="Add this many of the eligible synthetic images, picked with the seed (default: all).", min=0)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what the split would be and write nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Split the images a query selects by patient, stratified by label, and store the split."""
    from curator.splits import SplitSpec, create_split_with_plan, preview_split

    synthetic = words_of(add_synthetic) or None
    if count is not None and synthetic is None:
        raise UserError("--count needs --add-synthetic WORDS")
    spec = SplitSpec(name=name, query=words_of(query), test_fraction=test_fraction, val_fraction=val_fraction, seed=seed,
                     by_view=by_view, synthetic_query=synthetic, synthetic_count=count)
    catalog = state_of(context).catalog
    plan = preview_split(catalog, spec) if dry_run else create_split_with_plan(catalog, spec)[1]
    if as_json:
        print_json(plan.to_dict() | {"created": not dry_run})
        return
    print_plan(plan)
    if dry_run:
        console.print("dry run: nothing was written")
    else:
        console.print(f"created split '{name}' with {len(plan.members)} images")


@split_app.command("list")
@handle_errors
def list_command(context: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the splits with their query, seed and images per side."""
    from curator.splits import list_splits

    splits = list_splits(state_of(context).catalog)
    if as_json:
        print_json(splits)
        return
    table = Table(title=f"{len(splits)} splits")
    for column in ("id", "name", "query", "synthetic", "seed", "train", "val", "test", "locked"):
        table.add_column(column)
    for split in splits:
        table.add_row(str(split["id"]), split["name"], split["query"], split["synthetic_query"] or "-", str(split["seed"]),
                      *(str(split["sides"][side]) for side in ("train", "val", "test")), "yes" if split["locked"] else "no")
    console.print(table)


@split_app.command("show")
@handle_errors
def show_command(
    context: typer.Context,
    name: Annotated[str, typer.Argument(help="Split name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show a split's counts per side by label, view, origin and method, and what it excluded."""
    from curator.splits import split_summary

    summary = split_summary(state_of(context).catalog, name)
    if as_json:
        print_json(summary)
        return
    console.print(f"[bold]split {summary['name']}[/] (id {summary['id']}, seed {summary['seed']}, "
                  f"{'locked' if summary['locked'] else 'unlocked'})", highlight=False)
    console.print(f"  query      {summary['query']}", highlight=False)
    if summary["synthetic_query"]:
        console.print(f"  synthetic  {summary['synthetic_query']}", highlight=False)
    params = summary["params"]
    console.print(f"  fractions  test {params.get('test_fraction')}, validation {params.get('val_fraction')}"
                  + (", stratified by view" if params.get("by_view") else ""), highlight=False)
    for side, facts in summary["sides"].items():
        console.print(f"  [bold]{side}[/] {facts['images']} images, {facts['patients']} patients", highlight=False)
        for facet in ("label", "view", "origin", "method"):
            counts = facts.get(facet, {})
            text = ", ".join(f"{value} {number}" for value, number in sorted(counts.items()))
            console.print(f"    {facet:8} {text}", highlight=False)
    for reason, entry in summary["excluded"].items():
        console.print(f"  excluded {entry['count']}: {reason} (ids {', '.join(map(str, entry['examples']))}"
                      f"{', ...' if entry['count'] > len(entry['examples']) else ''})", highlight=False)
    for note in params.get("notes", []):
        console.print(f"  note: {note}", highlight=False)
    if summary["evaluations"]:
        console.print(f"  used by evaluations {', '.join(map(str, summary['evaluations']))}")


@split_app.command("delete")
@handle_errors
def delete_command(context: typer.Context, name: Annotated[str, typer.Argument(help="Split name.")]) -> None:
    """Delete a split that no evaluation has used."""
    from curator.splits import delete_split

    delete_split(state_of(context).catalog, name)
    console.print(f"deleted split '{name}'")


@handle_errors
def export_command(
    context: typer.Context,
    name: Annotated[str, typer.Argument(help="Split name.")],
    directory: Annotated[Path, typer.Argument(help="Folder to create; it must be empty or absent.")],
    export_format: Annotated[str, typer.Option("--format", help="keras: train/val/test folders of PNGs per label; csv: a manifest of the working files; npz: NumPy arrays.")] = "keras",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier export in DIRECTORY.")] = False,
) -> None:
    """Export a split at working resolution for training elsewhere."""
    from curator.export import export_split

    state = state_of(context)
    with progress_bar() as bar:
        task = bar.add_task(f"exporting {name}", total=None, status="")

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = export_split(state.catalog, state.settings, name, directory, export_format, overwrite, on_progress)
    images = sum(sum(counts.values()) for counts in report.counts.values())
    per_side = ", ".join(f"{side} {sum(counts.values())}" for side, counts in report.counts.items())
    console.print(f"exported {images} images ({per_side}) as {report.format} to {report.directory}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``curator split ...`` and ``curator export`` to the command line."""
    app.add_typer(split_app, name="split")
    app.command("export")(export_command)
