"""Shared pieces of the command line: the resolved settings, the catalog, errors and progress bars."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from curator.db import Catalog, CatalogError
from curator.settings import Settings

# Paths and query words are printed as they are: no emoji codes such as ":x:".
console = Console(emoji=False)
error_console = Console(stderr=True, emoji=False)
Function = TypeVar("Function", bound=Callable[..., Any])


@dataclass
class State:
    """Resolved top-level options, shared by every sub-command."""

    settings: Settings
    _catalog: Catalog | None = field(default=None, repr=False)

    @property
    def catalog(self) -> Catalog:
        """The catalog, opened (and upgraded to the current schema) on first use."""
        if self._catalog is None:
            self._catalog = Catalog(self.settings.database_url)
        return self._catalog


class UserError(Exception):
    """A mistake the user can fix; printed as one line with a non-zero exit."""


def state_of(context: typer.Context) -> State:
    """Return the shared state stored by the top-level callback."""
    root = context.find_root()
    if not isinstance(root.obj, State):
        root.obj = State(Settings.resolve())
    return root.obj


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error and exit with ``code``."""
    from rich.markup import escape

    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(function: Function) -> Function:
    """Turn the errors a user can fix into one line on stderr and exit code 1."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from curator.query import QueryError
    from curator.sources import SourceError

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (CatalogError, QueryError, SourceError, UserError) as error:
            fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
        except OSError as error:
            fail(f"{error.strerror or error}: {error.filename}" if error.filename else str(error))
        except (ArgumentError, NoSuchModuleError) as error:
            fail(f"invalid database URL: {str(error).splitlines()[0]}; expected sqlite:///FILE or postgresql://USER@HOST:PORT/NAME")
        except DBAPIError as error:
            fail(f"database error: {str(error.orig).splitlines()[0] if error.orig else str(error).splitlines()[0]}")
        except KeyboardInterrupt:
            error_console.print("interrupted; what was committed so far is kept and the command can be run again to resume")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def progress_bar(transient: bool = False) -> Progress:
    """Return a rich progress bar with count, elapsed and remaining time."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=error_console,
        transient=transient,
        disable=not sys.stderr.isatty() and not _force_progress(),
    )


def _force_progress() -> bool:
    import os

    return os.environ.get("CURATOR_PROGRESS") == "1"


def print_json(value: Any) -> None:
    """Print a value as indented JSON on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def setup_logging(verbose: bool) -> None:
    """Send log records to stderr; INFO with --verbose, WARNING otherwise."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        # TensorFlow warns about graph retracing on every new model, which is expected when each
        # evaluation run builds its own classifier.
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
