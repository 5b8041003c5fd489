"""``curator tui``: opens the terminal UI on the catalog chosen by ``--db`` / ``--home``."""

from __future__ import annotations

from typing import Annotated

import typer

from curator.cli.common import handle_errors, state_of
from curator.settings import Settings


def tui_command(
    context: typer.Context,
    db: Annotated[str | None, typer.Option("--db", help="Database URL; overrides the top-level --db for this command.")] = None,
    graphics: Annotated[str, typer.Option("--graphics", help="Image previews: 'auto' (Sixel or Kitty graphics when the terminal has them, else half blocks) or 'off' (always half blocks).")] = "auto",
    curator_name: Annotated[str | None, typer.Option("--curator", help="Name stored with the verdicts set in this session.")] = None,
) -> None:
    """Open the terminal UI: browse, flag and review images, build splits, run jobs."""
    from curator.cli.common import UserError

    if graphics not in ("auto", "off"):
        raise UserError(f"invalid --graphics {graphics!r}; expected 'auto' or 'off'")
    settings = state_of(context).settings
    if db:
        settings = Settings.resolve(settings.home, db)

    # Probe the terminal now, because the probe cannot run once Textual reads stdin.
    from tui.preview import detect_graphics

    use_graphics = graphics == "auto" and detect_graphics()

    from tui.app import CuratorApp
    from tui.services import CuratorServices

    CuratorApp(CuratorServices(settings, curator=curator_name), graphics=use_graphics).run()


def register(app: typer.Typer) -> None:
    """Add ``curator tui`` to the command line."""
    app.command("tui")(handle_errors(tui_command))
