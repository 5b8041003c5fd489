"""The ``curator`` command line (Typer). Heavy frameworks are imported inside the commands
that need them, so ``curator query`` and ``curator stats`` start without torch or TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curator.cli import catalog_commands
from curator.cli.common import State, handle_errors, setup_logging
from curator.settings import Settings

app = typer.Typer(
    name="curator",
    help="Catalog, curate and augment mammography datasets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    context: typer.Context,
    db: Annotated[str | None, typer.Option("--db", help="Database URL (sqlite:///FILE or postgresql://...); default CURATOR_DATABASE_URL, else catalog.db in the data home.")] = None,
    home: Annotated[Path | None, typer.Option("--home", help="Data home for the image store and derived files; default CURATOR_HOME, else ~/.local/share/curator.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what each step does.")] = False,
) -> None:
    """Catalog, curate and augment mammography datasets."""
    setup_logging(verbose)
    context.obj = State(Settings.resolve(home, db))


app.add_typer(catalog_commands.db_app, name="db")
app.add_typer(catalog_commands.import_app, name="import")
# Query words may start with "-" (negation), so unknown options are passed on as words.
WORDS_SETTINGS = {"ignore_unknown_options": True}
app.command("query", context_settings=WORDS_SETTINGS)(handle_errors(catalog_commands.query_command))
app.command("stats", context_settings=WORDS_SETTINGS)(handle_errors(catalog_commands.stats_command))
app.command("show")(handle_errors(catalog_commands.show_command))
app.command("flag")(handle_errors(catalog_commands.flag_command))
app.command("jobs")(handle_errors(catalog_commands.jobs_command))
app.command("cancel")(handle_errors(catalog_commands.cancel_command))


def _register_optional() -> None:
    """Add the command groups that live in their own modules."""
    import importlib

    for module_name in ("detect", "glow", "splits", "evaluate", "study", "tui"):
        try:
            module = importlib.import_module(f"curator.cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name == f"curator.cli.{module_name}":
                continue
            raise
        module.register(app)


_register_optional()


def main() -> None:
    """Run the command line."""
    app()
