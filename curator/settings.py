"""Locations of the catalog and the image store: the database URL and the data home.

The data home is ``--home``, else ``CURATOR_HOME``, else ``$XDG_DATA_HOME/curator`` (which is
``~/.local/share/curator`` when ``XDG_DATA_HOME`` is unset). The database is ``--db``, else
``CURATOR_DATABASE_URL``, else the SQLite file ``catalog.db`` inside the data home.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORK_SIZE = 128


def default_home() -> Path:
    """Return the data home used when neither ``--home`` nor ``CURATOR_HOME`` is set."""
    env_home = os.environ.get("CURATOR_HOME")
    if env_home:
        return Path(env_home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "curator"


@dataclass(frozen=True)
class Settings:
    """The resolved data home and database URL for one command."""

    home: Path
    database_url: str

    @classmethod
    def resolve(cls, home: str | Path | None = None, database_url: str | None = None) -> Settings:
        """Resolve the settings from explicit values, then the environment, then the defaults."""
        resolved_home = Path(home).expanduser() if home else default_home()
        resolved_home = resolved_home.absolute()
        url = database_url or os.environ.get("CURATOR_DATABASE_URL")
        if not url:
            url = f"sqlite:///{resolved_home / 'catalog.db'}"
        return cls(home=resolved_home, database_url=url)

    @property
    def store_dir(self) -> Path:
        """Folder of working-resolution derivatives and generated files, keyed by SHA-256."""
        return self.home / "store"

    @property
    def generators_dir(self) -> Path:
        """Folder of generator checkpoints and training pictures."""
        return self.home / "generators"

    @property
    def latents_dir(self) -> Path:
        """Folder of latent files, one per generated or encoded image."""
        return self.home / "latents"

    @property
    def reports_dir(self) -> Path:
        """Folder of reports, contact sheets and charts."""
        return self.home / "reports"

    @property
    def logs_dir(self) -> Path:
        """Folder of background job logs."""
        return self.home / "logs"
