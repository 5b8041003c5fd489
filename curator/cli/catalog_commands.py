"""Catalog commands: schema upgrades, imports, queries, statistics, image details and flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from curator.cli.common import UserError, console, error_console, handle_errors, print_json, progress_bar, state_of
from curator.settings import DEFAULT_WORK_SIZE

db_app = typer.Typer(help="Create, upgrade or downgrade the catalog schema.", no_args_is_help=True)
import_app = typer.Typer(help="Import a dataset folder into the catalog.", no_args_is_help=True)

WorkSize = Annotated[int, typer.Option("--work-size", help="Side in pixels of the square working derivative.", min=16, max=4096)]
Fit = Annotated[str, typer.Option("--fit", help="How the film becomes square: 'stretch' (as the reference study) or 'pad' (keep the aspect ratio).")]
Workers = Annotated[int, typer.Option("--workers", help="Decoding processes; 0 uses every core.", min=0)]


@db_app.command("upgrade")
@handle_errors
def db_upgrade(context: typer.Context, revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Upgrade the catalog schema (creates the catalog when it does not exist)."""
    from alembic.util import CommandError

    from curator.db import make_engine, upgrade

    settings = state_of(context).settings
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine, revision)
    except CommandError as error:
        raise UserError(f"cannot upgrade to {revision!r}: {error}") from error
    console.print(f"catalog at {engine.url.render_as_string(hide_password=True)} is at revision {revision}")


@db_app.command("downgrade")
@handle_errors
def db_downgrade(context: typer.Context, revision: Annotated[str, typer.Argument(help="Target revision; 'base' drops every table.")]) -> None:
    """Downgrade the catalog schema to an older revision."""
    from alembic.util import CommandError

    from curator.db import downgrade, make_engine

    settings = state_of(context).settings
    engine = make_engine(settings.database_url)
    try:
        downgrade(engine, revision)
    except CommandError as error:
        raise UserError(f"cannot downgrade to {revision!r}: {error}") from error
    console.print(f"catalog at {engine.url.render_as_string(hide_password=True)} is at revision {revision}")


@db_app.command("current")
@handle_errors
def db_current(context: typer.Context) -> None:
    """Print the catalog's schema revision and the newest one available."""
    from curator.db import current_revision, head_revision, make_engine

    engine = make_engine(state_of(context).settings.database_url)
    console.print(f"current: {current_revision(engine) or 'empty'}; newest: {head_revision()}")


def _run_import(context: typer.Context, discovery, kind: str, work_size: int, fit: str, workers: int) -> None:
    from curator.imaging import FIT_MODES
    from curator.importing import run_import
    from curator.jobs import JobRecorder

    if fit not in FIT_MODES:
        raise UserError(f"unknown --fit {fit!r}; expected one of {', '.join(FIT_MODES)}")
    state = state_of(context)
    catalog = state.catalog
    params = {"kind": kind, "work_size": work_size, "fit": fit}
    with JobRecorder(catalog, "import", params) as job, progress_bar() as bar:
        task = bar.add_task(f"importing {kind}", total=len(discovery.candidates), status="")

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            job.progress(done, total)

        report = run_import(catalog, state.settings, discovery, work_size=work_size, fit=fit, workers=workers or None, on_progress=on_progress)
        job.result = report.to_dict()
        for line in report.failures:
            job.log(line)

    skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(report.skipped.items())) or "none"
    console.print(
        f"imported {report.imported} images, {report.already_present + report.duplicates} already catalogued, "
        f"skipped {sum(report.skipped.values())} ({skipped}), failed {report.failed}"
    )
    shown = report.failures[:25]
    for line in shown:
        error_console.print(f"failed: {line}", highlight=False, soft_wrap=True, markup=False)
    if report.failed > len(shown):
        error_console.print(f"... and {report.failed - len(shown)} more failures (listed in the job log: curator jobs {job.job_id})")
    if report.failed:
        raise typer.Exit(1)


@import_app.command("mini-ddsm")
@handle_errors
def import_mini_ddsm(
    context: typer.Context,
    path: Annotated[Path, typer.Argument(help="The mini-DDSM folder holding Normal/, Benign/ and Cancer/.")],
    metadata: Annotated[Path | None, typer.Option("--metadata", help="The metadata sheet (.xlsx or .csv, either edition).")] = None,
    ignore_missing: Annotated[bool, typer.Option("--ignore-missing", help="Count sheet rows whose file is absent as skipped, not failed.")] = False,
    work_size: WorkSize = DEFAULT_WORK_SIZE,
    fit: Fit = "stretch",
    workers: Workers = 0,
) -> None:
    """Import a mini-DDSM folder; labels, views and sides come from the sheet or from the names."""
    from curator.sources import discover_mini_ddsm

    discovery = discover_mini_ddsm(path.resolve(), metadata.resolve() if metadata else None, ignore_missing=ignore_missing)
    _run_import(context, discovery, "mini-ddsm", work_size, fit, workers)


@import_app.command("mias")
@handle_errors
def import_mias(context: typer.Context, path: Annotated[Path, typer.Argument(help="The folder holding Info.txt and the mdbNNN.pgm files.")],
                work_size: WorkSize = DEFAULT_WORK_SIZE, fit: Fit = "stretch", workers: Workers = 0) -> None:
    """Import a MIAS folder (labels from Info.txt, side from the numbering rule, all MLO)."""
    from curator.sources import discover_mias

    _run_import(context, discover_mias(path.resolve()), "mias", work_size, fit, workers)


@import_app.command("folder")
@handle_errors
def import_folder(
    context: typer.Context,
    path: Annotated[Path, typer.Argument(help="A folder of images; labels from parent folder names.")],
    manifest: Annotated[Path | None, typer.Option("--manifest", help="CSV with columns path,label,view,side (and optional patient); default PATH/manifest.csv when present.")] = None,
    work_size: WorkSize = DEFAULT_WORK_SIZE,
    fit: Fit = "stretch",
    workers: Workers = 0,
) -> None:
    """Import a plain folder of images, labelled by folder name or by a CSV manifest."""
    from curator.sources import discover_folder

    _run_import(context, discover_folder(path.resolve(), manifest.resolve() if manifest else None), "folder", work_size, fit, workers)


@import_app.command("dicom")
@handle_errors
def import_dicom(context: typer.Context, path: Annotated[Path, typer.Argument(help="A DICOM file or a folder of them.")],
                 work_size: WorkSize = DEFAULT_WORK_SIZE, fit: Fit = "stretch", workers: Workers = 0) -> None:
    """Import DICOM mammograms; patient identity is kept only as a salted hash."""
    from curator.sources import discover_dicom

    _run_import(context, discover_dicom(path.resolve()), "dicom", work_size, fit, workers)


def query_command(
    context: typer.Context,
    words: Annotated[list[str] | None, typer.Argument(help="Query words, e.g. cancer CC-left synthetic manipulated.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the matching rows as JSON.")] = False,
    paths: Annotated[bool, typer.Option("--paths", help="Print one file path per line.")] = False,
    count: Annotated[bool, typer.Option("--count", help="Print only the number of matches.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="Print at most this many rows.", min=1)] = None,
) -> None:
    """List the images that match query words."""
    from curator.catalog import count_images, find_images, marking_state
    from curator.query import parse

    query = parse(words or [])
    catalog = state_of(context).catalog
    if count:
        console.print(count_images(catalog, query))
        return
    images = find_images(catalog, query, limit=limit)
    if paths:
        for image in images:
            print(image.file_path)
        return
    if as_json:
        print_json([
            {
                "id": image.id, "sha256": image.sha256, "path": image.file_path, "work_path": image.work_path,
                "dataset": image.dataset, "patient": image.patient_key, "label": image.label, "view": image.view,
                "side": image.side, "origin": image.origin, "method": image.method, "marking": marking_state(image),
                "marking_score": image.marking_score, "generator_id": image.generator_id,
            }
            for image in images
        ])
        return
    table = Table(title=f"{len(images)} images match '{query}'" if str(query) else f"{len(images)} images")
    for column in ("id", "label", "view", "side", "origin", "method", "marking", "score", "patient", "file"):
        table.add_column(column)
    for image in images:
        table.add_row(
            str(image.id), image.label or "-", image.view or "-", image.side or "-", image.origin, image.method or "-",
            marking_state(image), f"{image.marking_score:.2f}" if image.marking_score is not None else "-",
            image.patient_key or "-", Path(image.file_path).name,
        )
    console.print(table)


def stats_command(
    context: typer.Context,
    words: Annotated[list[str] | None, typer.Argument(help="Query words selecting the images to count.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Count images by label, view, side, origin, method, dataset and marking."""
    from curator.catalog import stats
    from curator.query import parse

    result = stats(state_of(context).catalog, parse(words or []))
    if as_json:
        print_json(result)
        return
    console.print(f"[bold]{result['total']}[/] images from {result['patients']} patients" + (f" matching '{result['query']}'" if result["query"] else ""))
    for field in ("label", "view", "side", "origin", "method", "dataset", "marking"):
        counts = result[field]
        if not counts:
            continue
        text = ", ".join(f"{name} {count}" for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
        console.print(f"  {field:8} {text}", highlight=False)


def show_command(
    context: typer.Context,
    image_id: Annotated[int, typer.Argument(help="Image id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show an image's metadata, lineage up and down, detections and curator verdicts."""
    from curator.catalog import image_details

    details = image_details(state_of(context).catalog, image_id)
    if as_json:
        print_json(details)
        return
    image = details["image"]
    console.print(f"[bold]image {image['id']}[/] {escape(image['file_path'])}", highlight=False)
    for key in ("sha256", "dataset", "patient_key", "case_id", "label", "view", "side", "origin", "method", "params", "width", "height", "bit_depth", "work_path", "latent_path", "extra"):
        value = image.get(key)
        if value in (None, {}, []):
            continue
        source = image.get(f"{key}_source")
        console.print(f"  {key:12} {value}" + (f"  (from {source})" if source else ""), highlight=False, markup=False)
    console.print(f"  {'marking':12} {details['marking']}")
    if details["generator"]:
        console.print(f"  {'generator':12} {details['generator']['name']} (id {details['generator']['id']})")
    for title in ("parents", "children"):
        for row in details[title]:
            console.print(f"  {title[:-1] if title == 'parents' else 'child':12} {row['id']} {row['label'] or '-'} {row['origin']} {row['method'] or ''} ({row['role']})", highlight=False, markup=False)
    for detection in details["detections"]:
        console.print(f"  detection    {detection['detector']} v{detection['version']}: score {detection['score']:.3f}, {'flagged' if detection['flagged'] else 'not flagged'}, boxes {detection['boxes']}", highlight=False)
    for verdict in details["verdicts"]:
        state = {True: "marked", False: "unmarked", None: "cleared"}[verdict["marked"]]
        console.print(f"  verdict      {state} by {verdict['curator'] or 'curator'} at {verdict['at']}", highlight=False)


def flag_command(
    context: typer.Context,
    image_ids: Annotated[list[int], typer.Argument(help="Image ids.")],
    marked: Annotated[bool, typer.Option("--marked", help="The images carry painted marking.")] = False,
    unmarked: Annotated[bool, typer.Option("--unmarked", help="The images carry no painted marking.")] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the curator's verdict, so the detector's result counts again.")] = False,
    box: Annotated[list[str] | None, typer.Option("--box", help="A painted region as x,y,w,h in full-resolution pixels (with --marked); repeatable.")] = None,
    curator_name: Annotated[str | None, typer.Option("--curator", help="Who decided (stored with the verdict).")] = None,
) -> None:
    """Record the curator's marking verdict; it always wins over any detector."""
    from curator.catalog import set_verdicts

    if sum((marked, unmarked, clear)) != 1:
        raise UserError("give exactly one of --marked, --unmarked or --clear")
    boxes = []
    for text in box or []:
        parts = text.split(",")
        if len(parts) != 4 or not all(part.strip().isdigit() for part in parts):
            raise UserError(f"invalid --box {text!r}; expected x,y,w,h as whole numbers")
        boxes.append([int(part) for part in parts])
    if boxes and not marked:
        raise UserError("--box goes with --marked")
    verdict: bool | None = None
    if marked:
        verdict = True
    elif unmarked:
        verdict = False
    set_verdicts(state_of(context).catalog, image_ids, verdict, curator=curator_name, boxes=boxes)
    word = {True: "marked", False: "unmarked", None: "cleared"}[verdict]
    console.print(f"{word} {len(image_ids)} image{'s' if len(image_ids) != 1 else ''}: {', '.join(map(str, image_ids))}")


def jobs_command(
    context: typer.Context,
    job_id: Annotated[int | None, typer.Argument(help="Show one job with its log.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Number of recent jobs to list.")] = 20,
) -> None:
    """List recent jobs, or show one job's status and log."""
    from sqlalchemy import select

    from curator.models import Job

    catalog = state_of(context).catalog
    with catalog.session() as session:
        if job_id is not None:
            job = session.get(Job, job_id)
            if job is None:
                raise UserError(f"job {job_id} not found")
            console.print(f"job {job.id} {job.kind} {job.status} progress {job.progress:g}/{job.total or 0:g} {job.message or ''}", highlight=False)
            if job.error:
                console.print(f"error: {job.error}", highlight=False)
            console.print(job.log or "", highlight=False)
            return
        table = Table(title="jobs")
        for column in ("id", "kind", "status", "progress", "message", "started", "error"):
            table.add_column(column)
        for job in session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)):
            progress = f"{job.progress:g}/{job.total:g}" if job.total else f"{job.progress:g}"
            table.add_row(str(job.id), job.kind, job.status, progress, job.message or "", job.started_at.strftime("%Y-%m-%d %H:%M") if job.started_at else "-", job.error or "")
        console.print(table)


def cancel_command(context: typer.Context, job_id: Annotated[int, typer.Argument(help="Job id.")]) -> None:
    """Ask a running job to stop; it stops at its next progress update and keeps what it committed."""
    from curator.jobs import request_cancel

    if not request_cancel(state_of(context).catalog, job_id):
        raise UserError(f"job {job_id} is not pending or running")
    console.print(f"asked job {job_id} to stop")

