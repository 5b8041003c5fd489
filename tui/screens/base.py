"""The base of every curator screen: access to the app's services and a serial writer for flags."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from textual.screen import Screen

from curator.db import CatalogError

if TYPE_CHECKING:
    from tui.launcher import JobLauncher
    from tui.services import CuratorServices, FlagChange

Result = TypeVar("Result")


class CuratorScreen(Screen[None]):
    """A screen of the curator app; catalog work goes through ``services`` off the UI thread."""

    @property
    def services(self) -> CuratorServices:
        """The app's catalog service layer."""
        return self.app.services  # type: ignore[attr-defined]

    @property
    def launcher(self) -> JobLauncher:
        """The app's background job launcher."""
        return self.app.launcher  # type: ignore[attr-defined]

    async def read(self, function: Callable[..., Result], *args: Any) -> Result:
        """Run a catalog read in a thread so a slow query never freezes the screen."""
        return await asyncio.to_thread(function, *args)

    async def write(self, function: Callable[..., Result], *args: Any) -> Result:
        """Run a catalog write on the app's single writer thread, so writes land in key-press order."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.app.writer, function, *args)  # type: ignore[attr-defined]

    async def undo_newest_verdict(self) -> FlagChange | None:
        """Undo the newest verdict on the writer thread and notify; return the change, or None when nothing changed."""
        try:
            change = await self.write(self.services.undo)
        except (CatalogError, SQLAlchemyError) as error:
            self.notify(f"undo failed: {error}", severity="error", timeout=8)
            return None
        if change is None:
            self.notify("nothing to undo", timeout=2)
            return None
        self.notify(f"image {change.image_id}: verdict restored", timeout=2)
        return change
