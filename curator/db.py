"""Database engines, sessions and schema upgrades for the catalog.

SQLite connections run in WAL mode with a busy timeout and foreign keys on, so a curator using
the TUI and an import running in another process do not lock each other out. The schema is only
ever changed by the Alembic revisions in ``migrations/``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class CatalogError(Exception):
    """A catalog operation failed for a reason the user can fix; the message is one line."""


def _configure_sqlite(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(database_url: str) -> Engine:
    """Create an engine; for SQLite, create the parent folder and set the connection pragmas."""
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(database_url)
    except ArgumentError as error:
        raise CatalogError(f"invalid database URL {database_url!r}; expected sqlite:///FILE or postgresql://USER@HOST:PORT/NAME") from error
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        # Use psycopg 3, the driver curator installs, unless the user named another one.
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine_or_url: Engine | str):
    """Build an Alembic config pointing at the packaged migrations and the given database."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if isinstance(engine_or_url, Engine):
        config.attributes["connection_engine"] = engine_or_url
        url = engine_or_url.url.render_as_string(hide_password=False)
    else:
        url = engine_or_url
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the schema to ``revision`` (``base`` drops every table)."""
    from alembic import command

    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """Return the schema revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """Return the newest revision in ``migrations/``."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def ensure_schema(engine: Engine) -> None:
    """Bring an empty or older catalog up to the newest schema; leave a current one untouched."""
    try:
        has_version_table = inspect(engine).has_table("alembic_version")
    except Exception as error:  # noqa: BLE001 - any driver error means the database is unreachable
        raise CatalogError(f"cannot open the catalog at {engine.url!r}: {str(error).splitlines()[0]}") from error
    if has_version_table and current_revision(engine) == head_revision():
        return
    log.info("upgrading the catalog schema at %s", engine.url)
    upgrade(engine)


class Catalog:
    """An engine plus a session factory for one database, upgraded to the current schema."""

    def __init__(self, database_url: str, *, upgrade_schema: bool = True) -> None:
        self.url = database_url
        self.engine = make_engine(database_url)
        if upgrade_schema:
            ensure_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        """Open a new session; the caller closes it (``with catalog.session() as s``)."""
        return self._sessions()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """Open a session, commit when the block succeeds and roll back when it raises."""
        with self._sessions() as session:
            with session.begin():
                yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
